"""The reference-transaction hook: tag policy at creation and snapshot triggers.

The shim only starts Python for a refs/tags/ line whose git process looks
like `git tag`; here the parent's command line is parsed exactly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git, hook_input
from taydash_hooks.errors import Exit
from taydash_hooks.skips import skipped

log = logging.getLogger(__name__)

def created_by_git_tag(pid: str | None) -> bool:
    """True when the git process ``pid`` is a local `git tag` (not fetch, clone, pull)."""
    return pid is not None and pid.isdigit() and git.running(int(pid)) == "tag"


def parse_lines(stdin: bytes) -> list[tuple[str, str, str]]:
    """``<old> <new> <ref>`` lines for refs under refs/tags/."""
    return [(old, new, ref) for _, new, ref, old in hook_input.rows(stdin, "reference-transaction")
            if ref.startswith("refs/tags/")]


def run_hook(state: str, stdin: bytes, cwd: Path | None = None) -> int:
    """``taydash hook reference-transaction STATE`` with git's stdin."""
    if state not in ("prepared", "committed"):
        return Exit.OK  # "aborted", and states newer git may add ("preparing")
    rows = [r for r in parse_lines(stdin) if set(r[1]) != {"0"}]  # deletions never trigger
    if not rows or not created_by_git_tag(os.environ.get("TAYDASH_GIT_PID")):
        return Exit.OK
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if state == "prepared":
        code: int = Exit.OK
        if cfg.tags is not None and cfg.tags.check_at_creation and not skipped("tags"):
            from taydash_hooks.tags import policy as tag_policy

            code = tag_policy.check_at_creation(repo, cfg, rows)
        if code == Exit.OK and cfg.snapshots is not None:
            from taydash_hooks.snapshots import triggers

            code = triggers.names_free_at_creation(repo, cfg, rows)
        return code
    if state == "committed" and cfg.snapshots is not None:
        from taydash_hooks.lifecycle.snapshot import on_tag_created

        on_tag_created(repo, cfg, rows)
    return Exit.OK
