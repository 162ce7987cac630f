"""The one small storage interface every backend satisfies.

Snapshot logic never sees a URL scheme; it streams into ``put_stream`` and
reads with ``open``. A key is never overwritten by ``put_*`` on ``file://``,
and a failed upload leaves nothing under the final key on either backend.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from taydash_hooks.errors import Exit, TaydashError, usage

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Written:
    """What a put left behind: size and SHA-256 as streamed, version id on S3."""

    key: str
    size: int
    sha256: str
    version_id: str | None = None


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3 endpoint (``[snapshots.s3]``)."""

    endpoint: str = "localhost:9000"
    secure: bool = False
    region: str = ""
    object_lock_days: int = 0
    # Only one machine ever snapshots: a server without conditional writes is accepted.
    unsafe_single_writer: bool = False
    cache_dir: Path | None = None  # where probed server features are kept (per endpoint, bucket)


@dataclass(frozen=True)
class Features:
    """What a store's server really does, probed (S3 servers differ), never assumed."""

    versioning: str  # "Enabled", "Suspended", "Off"; "n/a" for a folder
    version_listing: bool  # ListObjectVersions works
    conditional_create: bool  # If-None-Match: * refuses a second create of one key
    object_lock: bool | None = None  # asked only when object_lock_days > 0

    def missing(self) -> list[str]:
        """The features a versioned, shared store needs and this one lacks, as words."""
        gaps = []
        if not self.conditional_create:
            gaps.append("conditional writes (If-None-Match)")
        if not self.version_listing:
            gaps.append("version listing (ListObjectVersions)")
        if self.versioning not in ("Enabled", "n/a"):
            gaps.append(f"versioning (it is {self.versioning})")
        if self.object_lock is False:
            gaps.append("Object Lock")
        return gaps


@dataclass(frozen=True)
class Properties:
    """What a store is, for code that hands it to another tool (vmbackup) or reports on it.

    Asked through :meth:`Store.properties`, never read off a backend's internals.
    """

    scheme: str  # "file" or "s3"
    versioned: bool = False  # keeps every version of a key (S3 with versioning)
    local_root: Path | None = None  # file: the folder
    bucket: str = ""
    prefix: str = ""  # s3: the key prefix inside the bucket, without slashes around it
    endpoint: str = ""
    secure: bool = False
    region: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Health:
    """What `doctor` reports of a store: reachable, and whether it keeps versions."""

    ok: bool
    detail: str
    versioning: str | None = None  # "Enabled", "Suspended", "Off"; None: not a versioned store
    object_lock: bool | None = None  # the bucket has Object Lock; None: not applicable
    encryption: str | None = None  # default server-side encryption ("" off); None: not S3
    fix: str = ""


@dataclass(frozen=True)
class Version:
    key: str
    version_id: str
    size: int
    modified: str
    latest: bool


class Store(Protocol):
    """A place that holds backups under relative keys (``db-backups/...``)."""

    url: str  # for messages and manifests: never carries credentials

    def put_stream(self, key: str, stream: BinaryIO) -> Written:
        """Upload everything ``stream`` yields; on any failure nothing stays under ``key``."""
        ...

    def features(self, refresh: bool = False) -> Features:
        """What the server really does (probed on first use, cached; ``refresh``: probe now)."""
        ...

    def prepare_writes(self) -> None:
        """Before a run stores anything: exit 3 naming the missing feature when this store
        cannot keep a backup's promises (one writer per key; Object Lock when asked for)."""
        ...

    def init(self, lock_days: int, apply: bool) -> list[str]:
        """`taydash store init`: make the store ready (bucket, versioning, Object Lock at
        creation); an existing one changes only with ``apply``. One line per step."""
        ...

    def put_bytes(self, key: str, data: bytes) -> Written:
        """Store a small object (manifest, sidecar) with a conditional create: when another
        writer got there first, raises :class:`KeyTaken` and nothing is replaced."""
        ...

    def exists(self, key: str) -> bool: ...

    def open(self, key: str, version_id: str | None = None) -> AbstractContextManager[BinaryIO]:
        """A readable stream of the object (one version of it on S3)."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursive), sorted."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove a partial backup (a new, unique prefix that has no manifest)."""
        ...

    def delete(self, key: str, version_id: str | None = None) -> None:
        """Remove one object: the version ``version_id`` only when given (what one run
        created), else every version of it on S3. Checked afterwards: exit 3 naming the key
        when it is still there (a server that ignored the delete)."""
        ...

    def adopt(self, prefix: str) -> None:
        """Take over what another tool (vmbackup) wrote under ``prefix``: on ``file://`` the
        files become private like ours; nothing to do on S3."""
        ...

    def clean_partial(self, prefix: str) -> int:
        """Remove leftovers of interrupted writes whose key starts with ``prefix``.

        Temp files on ``file://``, open multipart uploads on S3 (an upload cut
        off with the server cannot be aborted then). Returns how many.
        """
        ...

    def versions(self, key: str) -> list[Version]: ...

    def promote(self, key: str, version_id: str) -> Written:
        """Make an old version current again (a new version with its content)."""
        ...

    def properties(self) -> Properties:
        """What this store is (scheme, location, access), for tools that write to it themselves."""
        ...

    def retained_until(self, key: str, version_id: str | None = None) -> datetime | None:
        """Until when Object Lock keeps this object (version) from deletion; None: not locked."""
        ...

    def health(self) -> Health:
        """A read-only look at the store for `doctor`: reachable, versioning."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could leave the store prefix (``..``, absolute, empty parts)."""
    parts = key.rstrip("/").split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise usage(f"refusing store key {key!r}: it must be a plain relative path.")
    return key


class KeyTaken(TaydashError):
    """A conditional create found the key already written (by another run)."""

    def __init__(self, key: str, url: str) -> None:
        super().__init__(f"{key} already exists in {url}; backups are never overwritten.",
                         Exit.REFUSED)
        self.key = key


def from_attempt(prefix: str, name: str) -> bool:
    """True when ``name`` belongs to the run whose keys start with ``prefix``.

    A run's prefix is ``<dir>/<tag>_<TS>-<RUN>``, unique to it: ``prefix`` is followed by
    the end, a ``.``, ``_`` or ``/``, never by more of another run's id or tag name.
    """
    return name.startswith(prefix) and (len(name) == len(prefix) or name[len(prefix)] in "._/")


class HashingReader:
    """Wraps a binary stream; hashes and counts what passes through ``read``."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


def sha256_of(stream: BinaryIO) -> tuple[str, int]:
    """SHA-256 and size of everything in ``stream``, read in bounded chunks."""
    sha = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


def copy_hashing(stream: BinaryIO, out: BinaryIO) -> str:
    """Copy ``stream`` to ``out`` in bounded chunks; the SHA-256 of what was copied."""
    sha = hashlib.sha256()
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        sha.update(chunk)
        out.write(chunk)
    return sha.hexdigest()
