"""`taydash health`: is this repository backed up, as of now?

Thresholds come from the optional ``[health]`` table; a value past its
threshold is a warning (coloured on a TTY), and so is a failed last verify or drill.
Health is a report: exit 0, unless ``--strict`` (for cron and CI): then any warning is
exit 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit
from taydash_hooks.lifecycle.status import MIB, Report, collect
from taydash_hooks.output import color, emit_json, listing


def _exit(report: Report, strict: bool) -> int:
    return Exit.REFUSED if strict and report.warnings else Exit.OK


def run(cwd: Path, as_json: bool, strict: bool = False) -> int:
    """The health report; exit 1 on any warning (a failed last verify or drill included)
    when ``strict``."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    report = collect(repo, cfg)
    if as_json:
        emit_json(report.to_json())
        return _exit(report, strict)
    out = sys.stdout
    r, b = report.releases, report.backups
    rows = [
        ("last release tag", f"{r.last_tag} ({r.days_since} days ago)" if r.last_tag else "none"),
        ("last snapshot", f"{b.days_since_snapshot} days ago"
         if b.days_since_snapshot is not None else "none"),
        ("HEAD tagged", "yes" if r.head_tagged else "no"),
        ("unpushed commits", str(report.remote.unpushed_commits)),
        ("tags without backup", listing(b.tags_without_backup or []) or "none"),
        ("tags not on remote", listing(report.remote.tags_not_on_remote or []) or "none"),
        ("repository size", f"{report.repository.size_bytes / MIB:.1f} MiB"),
    ]
    for name, value in rows:
        print(f"{name:<20} {value}")
    for blob in report.repository.large_blobs:
        print(f"{'large blob':<20} {blob.size / MIB:.1f} MiB  {blob.path}  {blob.oid[:12]}")
    bg = report.background
    if bg:
        print(f"{'background snapshot':<20} {bg.tag}: {'ok' if bg.ok else 'FAILED'} ({bg.finished})")
    for activity, res in report.last.items():
        if res:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(res.finished))
            print(f"{'last ' + activity.value:<20} {'passed' if res.ok else 'FAILED'} ({when}, "
                  f"{res.failed} of {res.checked} failed)")
    for w in report.warnings:
        print(color(f"WARNING: {w}", "yellow", out))
    return _exit(report, strict)
