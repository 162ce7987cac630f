"""The server-side pre-receive hook: protected branches and the tag policy.

A client hook can always be skipped with --no-verify; this one cannot.
"""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit
from taydash_hooks.hooks.checks import SERVER, check_updates
from taydash_hooks.hooks.report import render
from taydash_hooks.results import Verdict, overall
from taydash_hooks.updates import classify, read


def run_hook(stdin: bytes, cwd: Path | None = None) -> int:
    """``taydash hook pre-receive`` with git's stdin (``<old> <new> <ref>`` lines)."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if cfg.push is None and cfg.tags is None:
        return Exit.OK
    updates = classify(read(stdin, "pre-receive"), repo.root)
    results = check_updates(repo, cfg, updates, SERVER)
    render(results)
    return Exit.REFUSED if overall(results) is Verdict.REFUSED else Exit.OK
