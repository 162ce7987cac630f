"""`taydash snapshot TAG [--only KIND,...]`: take the snapshots of one tag by hand."""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit


def run(cwd: Path, tag: str, only: list[str] | None) -> int:
    """Snapshot ``tag`` now; nothing to do when it already has a backup."""
    from taydash_hooks.lifecycle.metrics import push_after
    from taydash_hooks.snapshots.take import take

    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    try:
        take(repo, cfg, tag, only)
    finally:
        push_after(repo, cfg, "the snapshot")
    return Exit.OK
