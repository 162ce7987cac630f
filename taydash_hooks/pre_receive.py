"""The server-side pre-receive hook: protected branches and the tag policy.

A client hook can always be skipped with --no-verify; this one cannot.
"""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit
from taydash_hooks.output import say
from taydash_hooks.pre_push import check_protected
from taydash_hooks.push_updates import classify, parse_pre_receive


def run_hook(stdin: bytes, cwd: Path | None = None) -> int:
    """``taydash hook pre-receive`` with git's stdin (``<old> <new> <ref>`` lines)."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if cfg.push is None and cfg.tags is None:
        return Exit.OK
    updates = classify(parse_pre_receive(stdin), repo.root)
    results: dict[int, str] = {}
    ok = check_protected(cfg, updates, results)
    if cfg.tags is not None:
        from taydash_hooks import tag_policy

        ok = tag_policy.check_push(repo, cfg, updates, results) and ok
    for i, u in enumerate(updates):
        say(f"{u.remote_ref} {u.local_oid[:7]}  {results.get(i, 'ok')}")
    return Exit.OK if ok else Exit.REFUSED
