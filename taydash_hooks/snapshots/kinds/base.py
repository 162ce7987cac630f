"""The interface every snapshot kind satisfies, and what it is handed and returns."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Protocol

from taydash_hooks.config import Config
from taydash_hooks.errors import refused
from taydash_hooks.results import Check
from taydash_hooks.snapshots.manifest import Artifact, Manifest
from taydash_hooks.store import Store

DEFAULT_TIMEOUT = 6 * 3600.0


def snapshot_timeout() -> float:
    """Seconds any one snapshot tool (pg_dump, vmbackup, gpg) may run: TAYDASH_SNAPSHOT_TIMEOUT."""
    try:
        return float(os.environ.get("TAYDASH_SNAPSHOT_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


@dataclass(frozen=True)
class TakeJob:
    """Everything a kind needs to take its snapshot of one tag."""

    cfg: Config
    store: Store
    tag: str
    ts: str  # the run's UTC timestamp, part of every key
    timeout: float
    # Note something to undo if this run is killed ("victoriametrics", snapshot name): the
    # next run of the tag in this clone hands it to the kind's clean_leftovers.
    remember: Callable[[str, str], None] = field(default=lambda kind, what: None)


@dataclass(frozen=True, kw_only=True)
class RestoreOptions:
    """What one kind's ``restore`` takes besides the target; each kind that has options
    subclasses it (postgres: ``PgRestoreOptions``), so an option is named, never placed."""


@dataclass(frozen=True)
class RestoreJob:
    """Everything a kind needs to bring one backup back: the bound manifest (the kind picks
    its artifacts from it, sibling ones too: postgres' roles script), where to (``target``:
    a database name, a folder as the user wrote it, relative to ``cwd``) and the kind's own
    options, by name."""

    cfg: Config
    store: Store
    manifest: Manifest
    target: str
    cwd: Path
    timeout: float
    _: KW_ONLY
    signed: bool = False  # an allowed key signed the manifest (snapshots/signing.py)
    options: RestoreOptions = field(default_factory=RestoreOptions)

    def artifacts(self, kind: str) -> list[Artifact]:
        return self.manifest.of_kind(kind)

    def one(self, kind: str) -> Artifact:
        """The one ``kind`` artifact of the backup: refused (exit 1) when it has none."""
        arts = self.artifacts(kind)
        if not arts:
            raise refused(f"the backup of {self.manifest.tag} has no {kind} artifact.")
        if len(arts) > 1:
            raise refused(f"the backup of {self.manifest.tag} lists {len(arts)} {kind} "
                          "artifacts; a backup has one.")
        return arts[0]


@dataclass(frozen=True)
class StackJob:
    """A throwaway compose project to restore a backup into (the drill's environment):
    ``turn`` aims an exec prefix of the live stack at the same service of that project."""

    cfg: Config
    store: Store
    manifest: Manifest
    turn: Callable[[tuple[str, ...]], tuple[str, ...]]
    cwd: Path
    timeout: float


@dataclass
class Checked:
    """What verifying one artifact found: how much was re-hashed, and every problem."""

    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    # Deep steps that could not run here (a secret key that is not in this keyring): the
    # stored bytes were checked, so this is no failure of the backup, and it is said.
    not_possible: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a deep step saw (the bundle's files)

    @property
    def ok(self) -> bool:
        return not self.problems


class SnapshotKind(Protocol):
    """One kind of snapshot. ``name`` is its ``[snapshots.<name>]`` table; ``drill_column`` the
    drill table's column for its real restore (None: a drill does not restore it)."""

    name: str
    drill_column: str | None

    def configured(self, cfg: Config) -> bool:
        """True when this kind has something to take under ``cfg``."""
        ...

    def ready(self, cfg: Config, store: Store) -> None:
        """Raise (one sentence) when this kind cannot be taken into ``store`` as configured,
        before anything of any kind is dumped: a configuration problem must not cost the
        hours of a database dump first. Asks no service."""
        ...

    def file_names(self, cfg: Config, run: str) -> list[str]:
        """The longest file names this kind's store keys of run ``<tag>_<TS>-<RUN>`` can have
        (the last part of a key): a tag whose keys would not fit a file name is refused first."""
        ...

    def label(self, art: Artifact) -> str:
        """How ``backups show`` names one artifact ("postgres app", "postgres roles")."""
        ...

    def database(self, art: Artifact) -> str:
        """The database one artifact holds ("" where the kind has none, and for the roles
        script): the ``database`` label of ``taydash metrics``."""
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

    def restore(self, job: RestoreJob) -> str:
        """Restore this kind's part of ``job.manifest`` into ``job.target`` (a new database, an
        empty folder; the kind decides what the target means); what was done."""
        ...

    def preflight(self, cfg: Config) -> list[Check]:
        """What `taydash doctor` checks for this kind: its tools, its service, its keys."""
        ...

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path,
              commit: str = "") -> str:
        """A real restore into scratch space that is removed afterwards; what was restored.
        ``commit`` is the backup's commit, for a kind that checks against the code (the
        config bundle's ``.env`` against ``.env.example``)."""
        ...

    def shares_objects(self, cfg: Config) -> bool:
        """Whether a snapshot of this kind reuses objects other backups hold (deduplicated
        chunks): then a prune collects none while it runs."""
        ...

    def stack_prefix(self, cfg: Config) -> tuple[str, ...] | None:
        """The exec prefix this kind reaches its service through (``docker compose exec -T
        SERVICE``), or None when it has no service of its own in a compose stack."""
        ...

    def into_stack(self, job: StackJob) -> list[str]:
        """Restore this kind's part of ``job.manifest`` into its service of a throwaway
        compose project (reached through ``job.turn`` of :meth:`stack_prefix`); what was
        done, one line each ([] when it has nothing there)."""
        ...

    def clean_leftovers(self, cfg: Config, notes: list[str]) -> int:
        """Undo what a killed run noted through ``TakeJob.remember``; how many were removed."""
        ...

    def remove(self, store: Store, art: Artifact) -> None:
        """Delete the stored objects of ``art`` (a backup without a manifest, or being deleted)."""
        ...
