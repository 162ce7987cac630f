"""`taydash verify TAG`: one line per check of :mod:`taydash_hooks.lifecycle.verification`."""

from __future__ import annotations

import sys
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit
from taydash_hooks.lifecycle.metrics import record_and_push
from taydash_hooks.lifecycle.records import Activity
from taydash_hooks.lifecycle.verification import remote_name, verify_tag
from taydash_hooks.output import emit_json, mark, out


def verify(cwd: Path, tag: str, as_json: bool) -> int:
    """One line per check; exit 1 when any fails."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    report = verify_tag(repo, cfg, remote_name(repo), tag)
    record_and_push(repo, cfg, Activity.VERIFY, report.ok, 1, 0 if report.ok else 1,
                    report.seconds)
    if as_json:
        emit_json(report.as_dict())
    else:
        for c in report.checks:
            out(f"{mark(c.ok, sys.stdout):<4} {c.name:<10} {c.detail}")
    return Exit.OK if report.ok else Exit.REFUSED
