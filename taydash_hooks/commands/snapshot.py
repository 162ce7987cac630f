"""`taydash snapshot TAG [--only KIND,...]`: take the snapshots of one tag by hand."""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit


def run(cwd: Path, tag: str, only: list[str] | None) -> int:
    """Snapshot ``tag`` now; nothing to do when it already has a backup."""
    from taydash_hooks.lifecycle.snapshot import snapshot

    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    snapshot(repo, cfg, tag, only)
    return Exit.OK
