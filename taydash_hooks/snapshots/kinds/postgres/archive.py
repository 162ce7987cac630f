"""A stored PostgreSQL dump: what its manifest entry records (:class:`PgDump`) and its plain
archive, read back through gpg and zstd as it arrives (never a whole copy on disk)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taydash_hooks.snapshots import fields
from taydash_hooks.snapshots.compress import ZstdReader, pumped
from taydash_hooks.snapshots.crypt import decrypting_stream
from taydash_hooks.snapshots.manifest import Artifact


@dataclass(frozen=True)
class PgDump:
    """What a ``postgres`` artifact records besides its bytes: a database dump, or (``roles``)
    the cluster's roles script."""

    database: str | None = None
    encrypted_to: tuple[str, ...] = ()  # the stored bytes are encrypted to these recipients
    compressed: str = ""  # "zstd" when we compressed it in the stream (.dump.zst)
    roles: bool = False  # pg_dumpall --globals-only, not a database dump
    server_version: str = ""  # the server dumped ("18.6")
    dumped_with: str = ""  # the pg_dump (or pg_dumpall) version that wrote it

    KNOWN = frozenset({"database", "encrypted_to", "compressed", "roles", "server_version",
                       "dumped_with"})

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.database is not None:
            doc["database"] = self.database
        if self.encrypted_to:
            doc["encrypted_to"] = list(self.encrypted_to)
        if self.compressed:
            doc["compressed"] = self.compressed
        if self.roles:
            doc["roles"] = True
        if self.server_version:
            doc["server_version"] = self.server_version
        if self.dumped_with:
            doc["dumped_with"] = self.dumped_with
        return doc

    @classmethod
    def of(cls, art: Artifact) -> PgDump:
        """The fields of ``art``, read strictly (it comes from the store): exit 1 otherwise."""
        with fields.of_artifact(art.kind, art.key, art.fields, cls.KNOWN) as f:
            compressed = fields.string(f, "compressed", True) or ""
            if compressed not in ("", "zstd"):
                raise fields.Bad(f"compressed {compressed!r} is not a compression this "
                                 "version reads")
            return cls(database=fields.string(f, "database", True),
                       encrypted_to=fields.strings(f, "encrypted_to"), compressed=compressed,
                       roles=fields.flag(f, "roles"),
                       server_version=fields.string(f, "server_version", True) or "",
                       dumped_with=fields.string(f, "dumped_with", True) or "")


@contextlib.contextmanager
def plain_reader(source: Any, art: Artifact, timeout: float) -> Iterator[Any]:
    """The plain archive of ``source`` (the stored bytes, read as they arrive): decrypted
    through gpg and decompressed as ``art`` says, read on demand by the caller's thread."""
    dump = PgDump.of(art)
    with contextlib.ExitStack() as stack:
        fh: Any = source
        if dump.encrypted_to:
            fh = stack.enter_context(decrypting_stream(fh, f"the dump {art.key}", timeout))
        yield ZstdReader(fh) if dump.compressed == "zstd" else fh


@contextlib.contextmanager
def plain_pipe(source: Any, art: Artifact, timeout: float) -> Iterator[IO[bytes]]:
    """:func:`plain_reader` as a real pipe, for a child's stdin (a thread fills it)."""
    with plain_reader(source, art, timeout) as plain, pumped(plain) as fh:
        yield fh


@contextlib.contextmanager
def plain_local(local: Path, art: Artifact, timeout: float) -> Iterator[IO[bytes]]:
    """The downloaded ``local`` copy as pg_restore reads it (see :func:`plain_pipe`)."""
    with local.open("rb") as src, plain_pipe(src, art, timeout) as fh:
        yield fh
