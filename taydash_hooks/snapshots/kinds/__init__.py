"""Snapshot kinds behind one interface, registered in one table.

Each kind is one module with a class satisfying :class:`SnapshotKind`: take
(stream into the store, yield typed artifacts), verify (re-hash what is
stored; ``deep`` adds the kind's own tool), restore, drill (restore into
scratch and throw it away) and remove. Adding a kind touches its module and
its line in :func:`_register_all`; nothing else switches on a kind's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from taydash_hooks.config import Config
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.store import Store


@dataclass(frozen=True)
class TakeJob:
    """Everything a kind needs to take its snapshot of one tag."""

    cfg: Config
    store: Store
    tag: str
    ts: str  # the run's UTC timestamp, part of every key
    timeout: float


@dataclass
class Checked:
    """What verifying one artifact found: how much was re-hashed, and every problem."""

    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class SnapshotKind(Protocol):
    """One kind of snapshot. ``name`` is its ``[snapshots.<name>]`` table."""

    name: str

    def configured(self, cfg: Config) -> bool:
        """True when this kind has something to take under ``cfg``."""
        ...

    def tool_versions(self, cfg: Config) -> dict[str, str]:
        """The versions of the tools this kind runs, for the manifest."""
        ...

    def take(self, job: TakeJob) -> Iterator[Artifact]:
        """Stream the snapshot into the store; yield each artifact as soon as it is complete
        (so a later failure can remove it)."""
        ...

    def verify(self, cfg: Config, store: Store, art: Artifact, deep: bool) -> Checked:
        """Re-hash every stored byte of ``art`` against the manifest; ``deep`` also reads it
        with the kind's own tool."""
        ...

    def restore(self, cfg: Config, store: Store, art: Artifact, target: str) -> str:
        """Restore ``art`` into ``target`` (a new database name, or an empty folder); what was done."""
        ...

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path) -> str:
        """A real restore into scratch space that is removed afterwards; what was restored."""
        ...

    def remove(self, store: Store, art: Artifact) -> None:
        """Delete the stored objects of ``art`` (a backup without a manifest, or being deleted)."""
        ...


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


def registry() -> dict[str, SnapshotKind]:
    """Every registered kind by name (the kind modules load on first use)."""
    if not _REGISTRY:
        _register_all()
    return _REGISTRY


def get(name: str) -> SnapshotKind:
    """The kind called ``name``; a manifest naming an unknown kind is refused (exit 1)."""
    kind = registry().get(name)
    if kind is None:
        from taydash_hooks.errors import refused

        raise refused(f"the manifest names an unknown snapshot kind {name!r}.")
    return kind
