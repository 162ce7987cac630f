"""The pre-push hook: protected branches, tag policy, validation and snapshots in one run.

Every stdin line is classified before anything runs; each ref gets one
summary line on stderr; exit 0 lets the push through, 1 blocks it.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit
from taydash_hooks.output import say
from taydash_hooks.push_updates import Kind, RefUpdate, classify, parse_pre_push
from taydash_hooks.skips import skipped

log = logging.getLogger(__name__)


def protected_refusal(update: RefUpdate, patterns: Sequence[str]) -> str | None:
    """Why ``update`` may not touch a protected branch, or None."""
    if not update.is_branch or not any(fnmatch.fnmatchcase(update.name, p) for p in patterns):
        return None
    if update.kind is Kind.DELETE:
        return f"refused: {update.remote_ref} is protected and cannot be deleted"
    if update.kind is Kind.FORCE:
        return f"refused: {update.remote_ref} is protected; non-fast-forward update refused"
    return None


def check_protected(cfg: Config, updates: list[RefUpdate], results: dict[int, str]) -> bool:
    """Refuse deletions and non-fast-forwards of ``push.protected`` branches (client and server)."""
    ok = True
    if cfg.push is not None:
        for i, u in enumerate(updates):
            why = protected_refusal(u, cfg.push.protected)
            if why:
                results[i] = why
                ok = False
    return ok


def note(results: dict[int, str], i: int, text: str) -> None:
    """Add ``text`` to the summary of update ``i`` (several checks speak about one ref)."""
    results[i] = f"{results[i]}; {text}" if i in results else text


def _refused(status: str | None) -> bool:
    return status is not None and status.split(":", 1)[0] in ("REJECTED", "REFUSED", "refused")


def gate_updates(
    repo: git.Repo, cfg: Config, updates: list[RefUpdate], results: dict[int, str]
) -> bool:
    """Protected-branch and validation checks; fills one status per update index.

    Every pushed commit is validated, also one that only a tag carries; refs
    already refused by another check are not validated again.
    """
    ok = check_protected(cfg, updates, results)
    for i, u in enumerate(updates):
        if u.kind is Kind.DELETE and i not in results:
            results[i] = "deletion allowed"
        elif u.kind is Kind.UNCHANGED and i not in results:
            results[i] = "unchanged"
    if cfg.validate is None or skipped("validate"):
        return ok
    todo = [i for i, u in enumerate(updates)
            if u.kind not in (Kind.DELETE, Kind.UNCHANGED) and not _refused(results.get(i))]
    if not todo:
        return ok
    if not cfg.validate.commands:
        say("taydash: [validate] has no commands configured; nothing to validate.")
        return ok
    from taydash_hooks.gate import Gate, resolve_targets

    targets = resolve_targets([updates[i].local_oid for i in todo], repo.root)
    gate = Gate(repo, cfg.validate)
    for i in todo:
        target = targets[updates[i].local_oid]
        if target is None:
            note(results, i, "not a commit: nothing to validate")
            continue
        verdict = gate.check(target)
        note(results, i, verdict.summary())
        ok = ok and verdict.ok
    return ok


def check_push(
    repo: git.Repo, cfg: Config, remote: str, url: str, updates: list[RefUpdate]
) -> int:
    """Run every configured check on ``updates``; print the summary; return the exit code."""
    results: dict[int, str] = {}
    ok = True
    if cfg.tags is not None and not skipped("tags"):
        from taydash_hooks import tag_policy

        ok = tag_policy.check_push(repo, cfg, updates, results) and ok
    ok = gate_updates(repo, cfg, updates, results) and ok
    if ok and cfg.snapshots is not None and not skipped("snapshot"):
        from taydash_hooks import snapshot_triggers

        ok = snapshot_triggers.on_push(repo, cfg, updates, results) and ok
    for i, u in enumerate(updates):
        status = results.get(i, "ok")
        say(f"{u.remote_ref} {u.local_oid[:7]}  {status}")
    if not ok:
        say(f"taydash: push to {remote or url} blocked (bypass: git push --no-verify).")
        return Exit.REFUSED
    return Exit.OK


def run_hook(remote: str, url: str, stdin: bytes, cwd: Path | None = None) -> int:
    """``taydash hook pre-push REMOTE URL`` with git's stdin."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if cfg.empty:
        log.info("no taydash configuration; nothing to check.")
        return Exit.OK
    updates = classify(parse_pre_push(stdin), repo.root)
    if not updates:
        return Exit.OK
    return check_push(repo, cfg, remote, url, updates)
