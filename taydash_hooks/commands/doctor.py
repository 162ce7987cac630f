"""`taydash doctor`: every check with OK/FAIL and the exact fix. Exit 0 only when all pass.

Doctor is a loop over sections; each section's checks live with what they check: the
install (``install.preflight``), the tag signatures (``tags/preflight.py``), each snapshot
kind (its ``preflight``), the store (``snapshots/store_preflight.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError
from taydash_hooks.output import color
from taydash_hooks.results import Check
from taydash_hooks.snapshots.kinds.place import tool_check


def checks(cwd: Path) -> list[Check]:
    """Every finding, in the order they are printed."""
    from taydash_hooks import config as config_mod
    from taydash_hooks import install
    from taydash_hooks.snapshots import store_preflight
    from taydash_hooks.tags import preflight as tags_preflight

    found = [tool_check("git", "git")]
    try:
        repo = git.find_repo(cwd)
    except TaydashError as exc:
        return [*found, Check("repository", False, exc.message, "run inside a git repository")]
    try:
        cfg = config_mod.load(repo)
        found.append(Check("configuration", True, str(cfg.source or "none (nothing enabled)")))
    except TaydashError as exc:
        return [*found, Check("configuration", False, exc.message, "fix the key named above")]
    ssh = bool(cfg.tags and "ssh" in cfg.tags.formats)
    found += [tool_check("gpg", "gnupg"), tool_check("ssh-keygen", "openssh-client", ssh)]
    found += install.preflight(cwd, server=repo.bare)
    found += tags_preflight.preflight(repo, cfg)
    found += _kinds(cfg)
    found += store_preflight.preflight(repo, cfg)
    return found


def _kinds(cfg: Config) -> list[Check]:
    """Each enabled snapshot kind's own checks (tools, its service, its keys), then the
    ``encrypt_to`` recipients every dump is encrypted to."""
    snap = cfg.snapshots
    if snap is None:
        return []
    from taydash_hooks.snapshots import kinds
    from taydash_hooks.snapshots.crypt import recipient_check

    found = []
    for name, kind in kinds.registry().items():
        if name in snap.kinds and kind.configured(cfg):
            found += kind.preflight(cfg)
    seen = {c.name for c in found}
    found += [c for c in map(recipient_check, snap.encrypt_to) if c.name not in seen]
    return found


def run(cwd: Path) -> int:
    found = checks(cwd)
    out = sys.stdout
    for f in found:
        mark = color("OK  ", "green", out) if f.ok else color("WARN", "yellow", out) \
            if f.warning else color("FAIL", "red", out)
        print(f"{mark} {f.name:<28} {f.detail}")
        if not f.ok and f.fix:
            print(f"     fix: {f.fix}")
    return Exit.OK if all(f.ok or f.warning for f in found) else Exit.REFUSED
