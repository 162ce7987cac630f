"""A stored PostgreSQL dump: what its manifest entry records (:class:`PgDump`) and its plain
archive, read back through gpg and zstd as it arrives (never a whole copy on disk)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taydash_hooks.errors import refused
from taydash_hooks.snapshots import fields
from taydash_hooks.snapshots.compress import ZstdReader, pumped
from taydash_hooks.snapshots.crypt import decrypting_stream
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.store import Store


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
    # Stored as a chunk list (snapshots/chunks.py): the plain dump's SHA-256 and size.
    chunked: bool = False
    plain_sha256: str = ""
    plain_size: int = 0

    KNOWN = frozenset({"database", "encrypted_to", "compressed", "roles", "server_version",
                       "dumped_with", "chunked", "plain_sha256", "plain_size"})

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
        if self.chunked:
            doc.update(chunked=True, plain_sha256=self.plain_sha256, plain_size=self.plain_size)
        return doc

    @classmethod
    def of(cls, art: Artifact) -> PgDump:
        """The fields of ``art``, read strictly (it comes from the store): exit 1 otherwise."""
        with fields.of_artifact(art.kind, art.key, art.fields, cls.KNOWN) as f:
            compressed = fields.string(f, "compressed", True) or ""
            if compressed not in ("", "zstd"):
                raise fields.Bad(f"compressed {compressed!r} is not a compression this "
                                 "version reads")
            chunked = fields.flag(f, "chunked")
            if chunked and (compressed or fields.strings(f, "encrypted_to")):
                raise fields.Bad("a chunked dump is neither compressed whole nor encrypted")
            return cls(database=fields.string(f, "database", True),
                       encrypted_to=fields.strings(f, "encrypted_to"), compressed=compressed,
                       roles=fields.flag(f, "roles"),
                       server_version=fields.string(f, "server_version", True) or "",
                       dumped_with=fields.string(f, "dumped_with", True) or "",
                       chunked=chunked,
                       plain_sha256=fields.sha256(f.get("plain_sha256"), "plain_sha256")
                       if chunked else "",
                       plain_size=fields.size(f, "plain_size") if chunked else 0)


@contextlib.contextmanager
def plain_reader(source: Any, art: Artifact, timeout: float,
                 store: Store | None = None) -> Iterator[Any]:
    """The plain archive of ``source`` (the stored bytes, read as they arrive): decrypted
    through gpg and decompressed as ``art`` says, read on demand by the caller's thread; for a
    chunked dump ``source`` is its chunk list, and the chunks come from ``store``."""
    dump = PgDump.of(art)
    if dump.chunked:
        if store is None:
            raise refused(f"{art.key} is a chunk list; it is read with its store.")
        from taydash_hooks.snapshots.chunks import ChunkReader

        yield ChunkReader(source, store, art.key, dump.plain_sha256, dump.plain_size)
        return
    with contextlib.ExitStack() as stack:
        fh: Any = source
        if dump.encrypted_to:
            fh = stack.enter_context(decrypting_stream(fh, f"the dump {art.key}", timeout))
        yield ZstdReader(fh) if dump.compressed == "zstd" else fh


@contextlib.contextmanager
def plain_pipe(source: Any, art: Artifact, timeout: float,
               store: Store | None = None) -> Iterator[IO[bytes]]:
    """:func:`plain_reader` as a real pipe, for a child's stdin (a thread fills it)."""
    with plain_reader(source, art, timeout, store) as plain, pumped(plain) as fh:
        yield fh


@contextlib.contextmanager
def plain_local(local: Path, art: Artifact, timeout: float) -> Iterator[IO[bytes]]:
    """The downloaded ``local`` copy as pg_restore reads it (see :func:`plain_pipe`)."""
    with local.open("rb") as src, plain_pipe(src, art, timeout) as fh:
        yield fh
