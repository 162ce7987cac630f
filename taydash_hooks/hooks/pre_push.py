"""The pre-push hook: protected branches, tag policy, validation and snapshots in one run.

Every stdin line is classified before anything runs; each ref gets one
summary line on stderr; exit 0 lets the push through, 1 blocks it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit
from taydash_hooks.gate.fast_path import write_summary
from taydash_hooks.hooks.checks import CLIENT, check_updates
from taydash_hooks.hooks.report import render
from taydash_hooks.results import Verdict, overall
from taydash_hooks.updates import classify, read

log = logging.getLogger(__name__)


def run_hook(remote: str, url: str, stdin: bytes, cwd: Path | None = None) -> int:
    """``taydash hook pre-push REMOTE URL`` with git's stdin."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if cfg.empty:
        log.info("no taydash configuration; nothing to check.")
        return Exit.OK
    write_summary(repo, cfg)
    updates = classify(read(stdin, "pre-push"), repo.root)
    if not updates:
        return Exit.OK
    results = check_updates(repo, cfg, updates, CLIENT)
    render(results, f"push to {remote or url} blocked (bypass: git push --no-verify).")
    return Exit.REFUSED if overall(results) is Verdict.REFUSED else Exit.OK
