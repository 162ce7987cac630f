"""`taydash restore db|vm|config`: bring one artifact of a bound backup back."""

from __future__ import annotations

from pathlib import Path

from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, refused, usage
from taydash_hooks.output import say
from taydash_hooks.snapshots import kinds
from taydash_hooks.snapshots.binding import require_bound
from taydash_hooks.snapshots.manifest import Artifact, Manifest


def _one(doc: Manifest, kind: str, database: str | None = None) -> Artifact:
    arts = [a for a in doc.of_kind(kind) if not a.roles]
    if database is not None:
        arts = [a for a in arts if a.database == database]
    if not arts:
        what = f"database {database}" if database else kind
        raise refused(f"the backup of {doc.tag} has no {what} artifact.")
    if len(arts) > 1:
        names = ", ".join(str(a.database) for a in arts)
        raise usage(f"the backup of {doc.tag} holds several databases ({names}); "
                    "choose one with --database.")
    return arts[0]


def _target(cfg: Config, cwd: Path, kind: str, target: str) -> str:
    """A database name as given; a folder relative to ``cwd``, except VictoriaMetrics' behind
    an exec prefix, which is a path inside the container (and must be absolute there)."""
    if kind == "victoriametrics":
        from taydash_hooks.snapshots.kinds.victoriametrics import settings

        if settings(cfg).exec:
            return target
    return str(cwd / target)


def restore(cwd: Path, tag: str, kind: str, target: str, database: str | None = None,
            server: tuple[str | None, int | None, str | None] = (None, None, None),
            with_roles: bool = False) -> int:
    """Restore the ``kind`` artifact of ``tag`` into ``target`` (a database name or a folder);
    ``server`` (host, port, user) restores a database onto another PostgreSQL server, and
    ``with_roles`` first creates the recorded roles it lacks."""
    from taydash_hooks.snapshots.location import open_repo_store

    repo, cfg, store = open_repo_store(cwd)
    if any(server):
        from taydash_hooks.snapshots.kinds.postgres import on_server

        cfg = on_server(cfg, *server)
    doc = require_bound(repo, store, tag)
    art = _one(doc, kind, database)
    if kind == "postgres":
        from taydash_hooks.snapshots.kinds import postgres
        from taydash_hooks.snapshots.kinds.base import snapshot_timeout

        roles = next((a for a in doc.of_kind(kind) if a.roles), None)
        say(postgres.restore(postgres.settings(cfg), store, art, target, snapshot_timeout(),
                             roles, with_roles))
        return Exit.OK
    say(kinds.get(kind).restore(cfg, store, art, _target(cfg, cwd, kind, target)))
    return Exit.OK
