"""The one check every hook flavour runs: ref updates in, one typed result per ref out.

pre-push runs every check, pre-receive the server-side ones, each pre-commit
id one of them; all build the same list of :class:`RefUpdate` and call
:func:`check_updates`.
"""

from __future__ import annotations

import enum

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.results import RefResult, Verdict, overall, results_for
from taydash_hooks.skips import skipped
from taydash_hooks.updates import RefUpdate


class HookCheck(str, enum.Enum):
    """The checks a hook can ask for, in the order they run."""

    PROTECTED = "protected"
    TAGS = "tags"
    VALIDATE = "validate"
    SNAPSHOT = "snapshot"


CLIENT = (HookCheck.PROTECTED, HookCheck.TAGS, HookCheck.VALIDATE, HookCheck.SNAPSHOT)
SERVER = (HookCheck.PROTECTED, HookCheck.TAGS)


def check_updates(repo: git.Repo, cfg: Config, updates: list[RefUpdate],
                  checks: tuple[HookCheck, ...] = CLIENT) -> list[RefResult]:
    """Run ``checks`` over ``updates``; snapshots only when nothing was refused."""
    results = results_for(updates)
    if HookCheck.PROTECTED in checks:
        from taydash_hooks.gate.push import check_protected

        check_protected(cfg, results)
    if HookCheck.TAGS in checks and cfg.tags is not None and not skipped("tags"):
        from taydash_hooks.tags.policy import check_push

        check_push(repo, cfg, results)
    if HookCheck.VALIDATE in checks:
        from taydash_hooks.gate.push import validate_updates

        validate_updates(repo, cfg, results)
    if HookCheck.SNAPSHOT in checks and overall(results) is not Verdict.REFUSED \
            and cfg.snapshots is not None and not skipped("snapshot"):
        from taydash_hooks.lifecycle.snapshot import on_push

        on_push(repo, cfg, results)
    return results
