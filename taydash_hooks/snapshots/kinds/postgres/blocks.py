"""``pg_dump -Fc -Z0``'s table data in blocks of tens of KiB instead of one block per row.

Uncompressed, pg_dump (up to 18 at least) writes each row of a COPY as a block of its own:
a 5-byte length, then the row. pg_restore sends each block to the server as one CopyData
message, and a restore of such an archive takes about 15 % longer than one of pg_dump's gzip
archive, whose blocks are 4 KiB (measured on the bench's 1.3 million rows: 1.50 s against
1.29 s; the same rows in 64-256 KiB blocks, 1.25 s). :class:`Reblocked` rewrites the blocks
as the dump streams by; what pg_restore makes of the archive is unchanged (the bytes of each
table's data, in order, are the same: only where the block lengths sit moves).

Where a block ends depends on the rows themselves (a row whose CRC-32 ends in six zero bits,
once a block holds 64 KiB; 256 KiB at most), so a row that changes length moves the block
boundaries only up to the next one or two, and a deduplicated dump (snapshots/chunks.py) still
finds the unchanged rows after it as the same bytes.

Only what this module knows is rewritten: the archive versions of PostgreSQL 12-18 (1.14-1.16),
4-byte integers and 8-byte offsets, no compression, no data offsets in the table of contents
(pg_dump writing to a pipe). Anything else (a newer format, a surprise in the data) is passed
through untouched from where it was met, so the worst case is pg_dump's own bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

READ = 1 << 20  # bytes asked of the source at a time
MIN_BLOCK = 64 * 1024  # no cut before a block holds this much
MAX_BLOCK = 256 * 1024  # a cut here whatever the rows (a longer row is a block of its own)
CUT_MASK = 0x3F  # a row whose CRC-32 has these bits clear ends its block (past MIN_BLOCK)
MAX_TEXT = 1 << 30  # a string of the table of contents (a definition): PostgreSQL's own limit

_VERSIONS = ((1, 14), (1, 15), (1, 16))  # PostgreSQL 12-15, 16, 17-18
_CUSTOM = 1  # archCustom in the header's format byte
_BLK_DATA, _BLK_BLOBS = 1, 3
_OFFSET_POS_SET = 2  # a data offset written into the table of contents (a seekable file)
_INT = struct.Struct("<BI")  # an integer of a 4-byte-int archive: a sign byte, then LE
_OFF = 9  # an offset: a flag byte, then 8 bytes


class _Unknown(Exception):
    """Something this module does not rewrite: the rest passes through as it is."""


class Reblocked:
    """``source`` (a plain ``pg_dump -Fc -Z0`` archive, read to its end) with its table data
    in blocks of 64-256 KiB; ``read`` as a file's. Errors of ``source`` are raised as they
    are."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._out = bytearray()
        self._pieces = self._archive()
        self._error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        if self._error is not None:
            # Raised again: a caller that went on reading must not take the end of a
            # generator that stopped at the error for the end of the dump.
            raise self._error
        while n < 0 or len(self._out) < n:
            try:
                piece = next(self._pieces, None)
            except BaseException as exc:
                self._error = exc
                raise
            if piece is None:
                break
            self._out += piece
        if n < 0 or n >= len(self._out):
            data = bytes(self._out)
            self._out.clear()
            return data
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    # --- the source ------------------------------------------------------------------

    def _fill(self, need: int) -> bool:
        """At least ``need`` unread bytes in the buffer; False at the source's end."""
        while len(self._buf) - self._pos < need and not self._eof:
            more = self._source.read(max(READ, need))
            if not more:
                self._eof = True
                break
            self._buf = self._buf[self._pos:] + more
            self._pos = 0
        return len(self._buf) - self._pos >= need

    def _take(self, n: int) -> bytes:
        if not self._fill(n):
            raise _Unknown("the archive ends early")
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def _rest(self) -> Iterator[bytes]:
        """Whatever is left, as it is."""
        if self._pos < len(self._buf):
            yield self._buf[self._pos:]
        self._buf, self._pos = b"", 0
        while not self._eof:
            more = self._source.read(READ)
            if not more:
                self._eof = True
                break
            yield more

    # --- the archive -----------------------------------------------------------------

    def _archive(self) -> Iterator[bytes]:
        kept: list[bytes] = []
        try:
            self._head(kept)
        except _Unknown:
            yield b"".join(kept)
            yield from self._rest()
            return
        yield b"".join(kept)
        yield from self._blocks()

    def _head(self, kept: list[bytes]) -> None:
        """The header and table of contents (pg_backup_archiver.c: ReadHead, ReadToc; the
        custom format's ReadExtraToc), every byte kept as it was read."""

        def take(n: int) -> bytes:
            data = self._take(n)
            kept.append(data)
            return data

        def integer() -> int:
            sign, value = _INT.unpack(take(5))
            return -int(value) if sign else int(value)

        def text() -> bytes | None:
            n = integer()
            if n > MAX_TEXT:
                raise _Unknown("a string longer than any pg_dump writes")
            return None if n < 0 else take(n)

        if take(5) != b"PGDMP":
            raise _Unknown("not a custom-format archive")
        version = tuple(take(3)[:2])
        int_size, off_size, form = take(3)
        if version not in _VERSIONS or (int_size, off_size, form) != (4, 8, _CUSTOM):
            raise _Unknown("an archive version or layout this module does not know")
        compression = take(1)[0] if version >= (1, 15) else integer()
        if compression != 0:
            raise _Unknown("a compressed archive")
        for _ in range(7):  # the creation time
            integer()
        for _ in range(3):  # the database's name, the server's and pg_dump's versions
            text()
        entries = integer()
        for _ in range(entries):
            integer()  # dump id
            integer()  # had a dumper
            for _ in range(4):  # table oid, oid, tag, description
                text()
            integer()  # section
            for _ in range(6):  # definition, drop, copy statement, namespace, tablespace, am
                text()
            if version >= (1, 16):
                integer()  # relkind
            text()  # owner
            text()  # "with oids"
            while text() is not None:  # dependencies, up to a null string
                pass
            if take(_OFF)[0] == _OFFSET_POS_SET:
                raise _Unknown("data offsets in the table of contents")

    def _blocks(self) -> Iterator[bytes]:
        """The data section: each block's rows in bigger blocks."""
        try:
            while self._fill(1):
                kind = self._buf[self._pos]
                if kind == _BLK_DATA:
                    yield self._take(5 + 1)  # the block's type and dump id
                    yield from self._rows()
                elif kind == _BLK_BLOBS:
                    yield self._take(5 + 1)
                    while True:
                        oid = self._take(5)
                        yield oid
                        if _INT.unpack(oid) == (0, 0):
                            break
                        yield from self._rows()
                else:
                    raise _Unknown("a block type this module does not know")
        except _Unknown:
            yield from self._rest()

    def _rows(self) -> Iterator[bytes]:
        """The length-prefixed pieces of one block's data up to its zero length, joined."""
        pending: list[bytes] = []
        size = 0
        try:
            while True:
                # The hot loop: a million rows are a million turns, so no call but the ones
                # each row needs while the buffer holds whole rows.
                buf, pos, end = self._buf, self._pos, len(self._buf)
                while pos + 5 <= end:
                    sign, n = _INT.unpack_from(buf, pos)
                    if sign or n == 0 or n > MAX_BLOCK or pos + 5 + n > end:
                        break
                    row = buf[pos + 5:pos + 5 + n]
                    pos += 5 + n
                    pending.append(row)
                    size += n
                    if size >= MIN_BLOCK and (size >= MAX_BLOCK or not zlib.crc32(row) & CUT_MASK):
                        yield _INT.pack(0, size) + b"".join(pending)
                        pending.clear()
                        size = 0
                self._pos = pos
                if not self._fill(5):
                    raise _Unknown("the archive ends inside a block")
                sign, n = _INT.unpack_from(self._buf, self._pos)
                if sign:
                    raise _Unknown("a negative length")
                if n == 0:
                    self._pos += 5
                    if size:
                        yield _INT.pack(0, size) + b"".join(pending)
                    yield _INT.pack(0, 0)
                    return
                if n > MAX_BLOCK:  # a long row (a big value): passed on as it comes
                    if size:
                        yield _INT.pack(0, size) + b"".join(pending)
                        pending.clear()
                        size = 0
                    yield self._take(5)
                    while n:
                        piece = self._take(min(n, READ))
                        n -= len(piece)
                        yield piece
                    continue
                if not self._fill(5 + n):
                    raise _Unknown("the archive ends inside a row")
        except _Unknown:
            if size:  # what was taken from the block so far, as one block still
                yield _INT.pack(0, size) + b"".join(pending)
            raise
