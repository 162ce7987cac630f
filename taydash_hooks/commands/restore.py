"""`taydash restore db|vm|config`: bring one kind of a bound backup back."""

from __future__ import annotations

from pathlib import Path

from taydash_hooks.errors import Exit
from taydash_hooks.output import say
from taydash_hooks.snapshots import kinds
from taydash_hooks.snapshots.binding import require_trusted
from taydash_hooks.snapshots.kinds.base import RestoreJob, RestoreOptions, snapshot_timeout
from taydash_hooks.snapshots.location import open_repo_store


def restore(cwd: Path, tag: str, kind: str, target: str, *,
            options: RestoreOptions | None = None) -> int:
    """Restore the ``kind`` part of ``tag``'s backup into ``target``; what the target means
    (a new database, a folder) and which ``options`` apply is the kind's own business."""
    repo, cfg, store = open_repo_store(cwd)
    doc, sig = require_trusted(repo, cfg, store, tag)
    job = RestoreJob(cfg, store, doc, target, cwd, snapshot_timeout(), signed=sig.allowed,
                     options=options or RestoreOptions())
    say(kinds.get(kind).restore(job))
    return Exit.OK
