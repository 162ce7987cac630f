"""`taydash store init [--object-lock-days N] [--yes]`: prepare the store before the first backup.

taydash never changes bucket settings by itself (a snapshot only says what is missing); this
is the one command that does, and on an existing bucket only with ``--yes``.
"""

from __future__ import annotations

from pathlib import Path

from taydash_hooks.errors import Exit
from taydash_hooks.output import say
from taydash_hooks.snapshots.location import open_repo_store


def run(cwd: Path, lock_days: int | None, yes: bool) -> int:
    """Create what is missing; print every step (what would change, without ``yes``)."""
    _, cfg, store = open_repo_store(cwd)
    days = lock_days if lock_days is not None else (
        cfg.snapshots.s3.object_lock_days if cfg.snapshots and cfg.snapshots.s3 else 0)
    for line in store.init(days, yes):
        say(line)
    return Exit.OK
