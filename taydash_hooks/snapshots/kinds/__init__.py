"""Snapshot kinds behind one interface, registered in one table.

Each kind is one module with a class satisfying :class:`SnapshotKind`: take
(stream into the store, yield typed artifacts), verify (re-hash what is
stored; ``deep`` adds the kind's own tool), restore, drill (restore into
scratch and throw it away) and remove. Adding a kind touches its module and
its line in :func:`_register_all`; nothing else switches on a kind's name (the layout
suite enforces it): each kind owns its config table, its artifact fields (``PgDump``,
``VmSnapshot``, ``Bundle``), what a restore target means and what doctor checks
(``preflight``).
"""

from __future__ import annotations

import threading

from taydash_hooks.config import Config
from taydash_hooks.snapshots.kinds.base import Checked, RestoreJob, SnapshotKind, TakeJob
from taydash_hooks.snapshots.manifest import Artifact, Manifest
from taydash_hooks.store import Store

__all__ = ["Checked", "RestoreJob", "SnapshotKind", "TakeJob", "check_all", "get", "register", "registry",
           "remove"]


_REGISTRY: dict[str, SnapshotKind] = {}


def register(kind: SnapshotKind) -> None:
    """Add ``kind`` to the table; a name registered twice is a bug caught at start."""
    if kind.name in _REGISTRY:
        raise AssertionError(f"snapshot kind {kind.name!r} registered twice")
    _REGISTRY[kind.name] = kind


def _register_all() -> None:
    from taydash_hooks.snapshots.kinds.bundle import ConfigBundle
    from taydash_hooks.snapshots.kinds.postgres import Postgres
    from taydash_hooks.snapshots.kinds.victoriametrics import VictoriaMetrics

    for kind in (Postgres(), VictoriaMetrics(), ConfigBundle()):
        register(kind)


_LOAD = threading.Lock()


def registry() -> dict[str, SnapshotKind]:
    """Every registered kind by name (the kind modules load on first use, once, even when
    several threads ask at the same moment)."""
    with _LOAD:
        if not _REGISTRY:
            _register_all()
    return _REGISTRY


def remove(store: Store, art: Artifact) -> None:
    """Delete the stored objects of one artifact, the way its kind stored them."""
    get(art.kind).remove(store, art)


def check_all(cfg: Config, store: Store, doc: Manifest, deep: bool) -> list[tuple[str, str, Checked]]:
    """Verify every artifact of ``doc`` with its own kind: (kind, key, what was found) each."""
    rows = []
    for art in doc.artifacts:
        try:
            checked = get(art.kind).verify(cfg, store, art, deep)
        except Exception as exc:  # a missing object is a failed check, not a crash
            checked = Checked(problems=[str(exc)])
        rows.append((art.kind, art.key, checked))
    return rows


def get(name: str) -> SnapshotKind:
    """The kind called ``name``; a manifest naming an unknown kind is refused (exit 1)."""
    kind = registry().get(name)
    if kind is None:
        from taydash_hooks.errors import refused

        raise refused(f"the manifest names an unknown snapshot kind {name!r}.")
    return kind
