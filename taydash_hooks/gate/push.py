"""The gate's checks of pushed refs: protected branches, then validation of every pushed commit."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.output import Word, say
from taydash_hooks.results import Finding, RefResult
from taydash_hooks.skips import skipped
from taydash_hooks.updates import Kind, RefUpdate


def protected_refusal(update: RefUpdate, patterns: Sequence[str]) -> Finding | None:
    """Why ``update`` may not touch a protected branch, or None."""
    if not update.is_branch or not any(fnmatch.fnmatchcase(update.name, p) for p in patterns):
        return None
    if update.kind is Kind.DELETE:
        return Finding(Word.REFUSED, f"{update.remote_ref} is protected and cannot be deleted")
    if update.kind is Kind.FORCE:
        return Finding(Word.REFUSED,
                       f"{update.remote_ref} is protected; non-fast-forward update refused")
    return None


def check_protected(cfg: Config, results: list[RefResult]) -> None:
    """Refuse deletions and non-fast-forwards of ``push.protected`` branches (client and server)."""
    if cfg.push is None:
        return
    for r in results:
        why = protected_refusal(r.update, cfg.push.protected)
        if why:
            r.add(why)


def validate_updates(repo: git.Repo, cfg: Config, results: list[RefResult]) -> None:
    """Validate every pushed commit, also one that only a tag carries.

    Deletions and unchanged refs need no validation; refs already refused by
    another check are not validated again.
    """
    for r in results:
        if r.update.kind is Kind.DELETE and not r.findings:
            r.add(Finding(Word.OK, "deletion allowed"))
        elif r.update.kind is Kind.UNCHANGED and not r.findings:
            r.add(Finding(Word.UNCHANGED))
    if cfg.validate is None or skipped("validate"):
        return
    todo = [r for r in results
            if r.update.kind not in (Kind.DELETE, Kind.UNCHANGED) and not r.refused]
    if not todo:
        return
    if not cfg.validate.commands:
        say("[validate] has no commands configured; nothing to validate.")
        return
    from taydash_hooks.gate.validation import Gate, resolve_targets

    targets = resolve_targets([r.update.local_oid for r in todo], repo.root)
    gate = Gate(repo, cfg.validate)
    for r in todo:
        target = targets[r.update.local_oid]
        if target is None:
            r.add(Finding(Word.SKIPPED, "not a commit: nothing to validate"))
            continue
        r.add(gate.check(target))
