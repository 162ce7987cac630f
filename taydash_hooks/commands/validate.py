"""`taydash validate [REV]`: the push gate on one revision, without pushing."""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit, usage
from taydash_hooks.gate.validation import Gate, resolve_targets
from taydash_hooks.output import line


def run(cwd: Path, rev: str) -> int:
    """Validate REV in isolation; 0 when it passes, 1 when it fails."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if cfg.validate is None:
        raise usage("No [validate] table in the configuration; nothing to validate.")
    if not cfg.validate.commands:
        line("[validate] has no commands configured; nothing to validate.")
        return Exit.OK
    oid = git.rev_parse(rev, cwd)
    if oid is None:
        raise usage(f"{rev!r} is not a revision in this repository.")
    target = resolve_targets([oid], cwd)[oid]
    if target is None:
        raise usage(f"{rev} does not point at a commit.")
    verdict = Gate(repo, cfg.validate).check(target)
    line(f"{rev} {target.commit[:7]}  {verdict.text()}")
    return Exit.OK if verdict.ok else Exit.REFUSED
