"""`taydash health`: is this repository backed up, as of now?

Thresholds come from the optional ``[health]`` table; a value past its
threshold is a warning (coloured on a TTY). Health is a report: exit 0,
unless ``--strict`` (for cron and CI): then any warning is exit 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit
from taydash_hooks.lifecycle.records import Activity
from taydash_hooks.lifecycle.status import MIB, collect
from taydash_hooks.output import color, emit_json, listing


def _exit(doc: dict[str, Any], strict: bool) -> int:
    return Exit.REFUSED if strict and doc["warnings"] else Exit.OK


def run(cwd: Path, as_json: bool, strict: bool = False) -> int:
    """The health report; exit 1 on any warning when ``strict``."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    doc = collect(repo, cfg)
    if as_json:
        emit_json(doc)
        return _exit(doc, strict)
    out = sys.stdout
    rows = [
        ("last release tag", f"{doc['last_release_tag']} ({doc['days_since_release']} days ago)"
         if doc["last_release_tag"] else "none"),
        ("last snapshot", f"{doc['days_since_snapshot']} days ago"
         if doc["days_since_snapshot"] is not None else "none"),
        ("HEAD tagged", "yes" if doc["head_tagged"] else "no"),
        ("unpushed commits", str(doc["unpushed_commits"])),
        ("tags without backup", listing(doc["tags_without_backup"] or []) or "none"),
        ("tags not on remote", listing(doc["tags_not_on_remote"] or []) or "none"),
        ("repository size", f"{doc['repo_size_bytes'] / MIB:.1f} MiB"),
    ]
    for name, value in rows:
        print(f"{name:<20} {value}")
    for b in doc["large_blobs"]:
        print(f"{'large blob':<20} {b['size'] / MIB:.1f} MiB  {b['path']}  {b['oid'][:12]}")
    last = doc["last_background_snapshot"]
    if last:
        print(f"{'background snapshot':<20} {last.get('tag')}: "
              f"{'ok' if last.get('ok') else 'FAILED'} ({last.get('finished')})")
    for activity in Activity:
        res = doc[f"last_{activity.value}"]
        if res:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(res["finished"]))
            print(f"{'last ' + activity.value:<20} {'passed' if res['ok'] else 'FAILED'} ({when}, "
                  f"{res['failed']} of {res['checked']} failed)")
    for w in doc["warnings"]:
        print(color(f"WARNING: {w}", "yellow", out))
    return _exit(doc, strict)
