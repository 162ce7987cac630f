"""Snapshot kinds behind one interface, registered in one table.

Each kind is one module (or, when it grows, one sub-package: ``postgres/``) with a class
satisfying :class:`SnapshotKind`: take (stream into the store, yield typed artifacts),
verify (re-hash what is stored; ``deep`` adds the kind's own tool), restore, drill (restore
into scratch and throw it away) and remove. Each kind owns its config table, its artifact
fields (``PgDump``, ``VmSnapshot``, ``Bundle``), its restore options (``PgRestoreOptions``),
what a restore target means and what doctor checks (``preflight``); nothing else switches on
a kind's name (the layout suite enforces it).

Adding a kind touches exactly these places (``tests/test_layout.py`` holds the links):

1. its module here, with the class;
2. its line in ``_MODULES`` below;
3. ``config.py``: its name in ``KINDS`` and its table as a ``SnapshotsConfig`` field;
4. ``cli.py``: its ``taydash restore <name>`` command;
5. ``tests/test_kind_conformance.py``: its case, which runs the suite every kind passes.
"""

from __future__ import annotations

import threading

from taydash_hooks.config import Config
from taydash_hooks.snapshots.kinds.base import (
    Checked,
    RestoreJob,
    SnapshotKind,
    StackJob,
    TakeJob,
)
from taydash_hooks.snapshots.manifest import Artifact, Manifest
from taydash_hooks.store import Store

__all__ = ["Checked", "RestoreJob", "SnapshotKind", "StackJob", "TakeJob", "check_all", "get",
           "register", "registry", "remove"]


_REGISTRY: dict[str, SnapshotKind] = {}

# Each kind's module and class, loaded when first asked for: a restore of one kind loads
# only that one (the other two cost ~30 ms of imports here).
_MODULES = {
    "postgres": ("taydash_hooks.snapshots.kinds.postgres", "Postgres"),
    "victoriametrics": ("taydash_hooks.snapshots.kinds.victoriametrics", "VictoriaMetrics"),
    "config": ("taydash_hooks.snapshots.kinds.bundle", "ConfigBundle"),
}


def register(kind: SnapshotKind) -> None:
    """Add ``kind`` to the table; a name registered twice is a bug caught at start."""
    if kind.name in _REGISTRY:
        raise AssertionError(f"snapshot kind {kind.name!r} registered twice")
    _REGISTRY[kind.name] = kind


def _load(name: str) -> SnapshotKind | None:
    """The registered kind ``name``, its module imported on first use (under ``_LOAD``)."""
    if name not in _REGISTRY and name in _MODULES:
        import importlib

        module, cls = _MODULES[name]
        kind = getattr(importlib.import_module(module), cls)()
        if kind.name != name:
            raise AssertionError(f"{module}.{cls} is named {kind.name!r}, not {name!r}")
        register(kind)
    return _REGISTRY.get(name)


_LOAD = threading.Lock()


def registry() -> dict[str, SnapshotKind]:
    """Every registered kind by name, in the table's order (the kind modules load on first
    use, once, even when several threads ask at the same moment)."""
    with _LOAD:
        for name in _MODULES:
            _load(name)
    return {**{name: _REGISTRY[name] for name in _MODULES}, **_REGISTRY}


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
    with _LOAD:
        kind = _load(name)
    if kind is None:
        from taydash_hooks.errors import refused

        raise refused(f"the manifest names an unknown snapshot kind {name!r}.")
    return kind
