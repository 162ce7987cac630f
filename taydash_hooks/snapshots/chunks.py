"""Deduplicated dumps: a stream cut by content-defined chunking, each chunk stored once.

A dump is cut with FastCDC (pyfastcdc: it cuts a stream as it arrives, so a dump is never
held whole; ``bench/dedup_choice`` measured it beside fastcdc). Each chunk is compressed with
zstd and stored under ``chunks/<h[:2]>/<h>.zst``, ``h`` the SHA-256 of its plain bytes: a
second dump whose table grew by appended rows stores only the chunks around the change.
What a backup holds is its chunk list, one line per chunk in order::

    <sha256> <size> chunks/ab/<sha256>.zst

stored under the artifact's own key (its SHA-256 in the signed manifest, like any object).
Restoring by hand needs nothing but the list: ``zstd -dc`` of each key in order, concatenated,
is the dump (RECOVERY.md).

The store is someone else: a list is parsed strictly (a key is always the one its hash names),
a chunk is decompressed no larger than its listed size, and every chunk's plain bytes must hash
to its name, and the whole to the manifest's ``plain_sha256``.

Chunks are shared, so removing a backup removes its list only; :func:`collect` (after a prune
or a delete) removes the chunks no remaining list names, never while a snapshot that may reuse
them runs (each writes ``locks/run-<run>.json`` first and checks for ``locks/prune-*``), and
never a chunk younger than the grace period (``TAYDASH_CHUNK_GRACE_HOURS``, default 24).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from taydash_hooks.errors import TaydashError, environment, refused
from taydash_hooks.store import Store
from taydash_hooks.store.base import KeyTaken

PREFIX = "chunks/"
LOCKS = "locks/"
AVG_SIZE = 1 << 20  # FastCDC's average; pyfastcdc makes min a quarter, max four times it
MAX_SIZE = 4 << 20
MAX_LIST = 64 << 20  # 64 MiB of list: over a million chunks, a terabyte of dump
STALE_LOCK = 6 * 3600.0  # a run lock older than the snapshot timeout is a dead run's
CLOCK_SKEW = 3600.0  # how far the store's clock may run ahead of ours
PRUNE_WAIT = 300.0  # how long a snapshot waits for a prune's collection to end
_LINE = re.compile(rb"([0-9a-f]{64}) ([0-9]{1,8}) chunks/([0-9a-f]{2})/([0-9a-f]{64})\.zst")


def chunk_key(digest: str) -> str:
    return f"{PREFIX}{digest[:2]}/{digest}.zst"


@dataclass(frozen=True)
class Chunk:
    digest: str
    size: int

    @property
    def key(self) -> str:
        return chunk_key(self.digest)


@dataclass(frozen=True)
class Written:
    """What :func:`store_stream` stored: the list's bytes, the plain stream's SHA-256 and
    size, and how many chunks (and compressed bytes) were new to the store."""

    listing: bytes
    plain_sha256: str
    plain_size: int
    chunks: int
    new_chunks: int
    new_bytes: int


def grace_seconds() -> float:
    try:
        return float(os.environ.get("TAYDASH_CHUNK_GRACE_HOURS", "24")) * 3600
    except ValueError:
        return 24 * 3600.0


def store_stream(stream: Any, store: Store) -> Written:
    """Cut ``stream`` (read to its end), store each chunk the store lacks, return the list.
    A chunk another run stores at the same moment is the same bytes: taken as stored."""
    import pyfastcdc
    import zstandard

    whole = hashlib.sha256()
    size = new = new_bytes = 0
    lines: list[bytes] = []
    done: set[str] = set()
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=True)
    for piece in pyfastcdc.FastCDC(avg_size=AVG_SIZE).cut_stream(stream):
        data = piece.data
        digest = hashlib.sha256(data).hexdigest()
        whole.update(data)
        size += len(data)
        lines.append(f"{digest} {len(data)} {chunk_key(digest)}\n".encode())
        if digest in done:
            continue
        done.add(digest)
        key = chunk_key(digest)
        if store.exists(key):
            continue
        packed = compressor.compress(data)
        with contextlib.suppress(KeyTaken):
            store.put_bytes(key, packed)
            new += 1
            new_bytes += len(packed)
    return Written(b"".join(lines), whole.hexdigest(), size, len(lines), new, new_bytes)


def parse(listing: bytes, where: str) -> list[Chunk]:
    """The chunks of a stored list, strictly (exit 1 naming ``where`` otherwise)."""
    if len(listing) > MAX_LIST:
        raise refused(f"the chunk list {where} is larger than {MAX_LIST} bytes.")
    found = []
    for n, line in enumerate(listing.split(b"\n")[:-1] if listing.endswith(b"\n")
                             else [listing] if listing else [], 1):
        m = _LINE.fullmatch(line)
        if m is None or m.group(4) != m.group(1) or m.group(3) != m.group(1)[:2] \
                or int(m.group(2)) > MAX_SIZE or int(m.group(2)) == 0:
            raise refused(f"line {n} of the chunk list {where} is not a chunk of this format.")
        found.append(Chunk(m.group(1).decode(), int(m.group(2))))
    return found


def read_chunk(store: Store, chunk: Chunk, where: str) -> bytes:
    """One chunk's plain bytes, refused (exit 1) unless they are exactly what its name says."""
    import zstandard

    try:
        with store.open(chunk.key) as fh:
            packed = fh.read(chunk.size + (64 << 10) + 1)  # zstd never grows data by more
    except TaydashError as exc:  # missing (exit 1), or the store unreachable (exit 3)
        raise TaydashError(f"chunk {chunk.key} of {where}: {exc.message}", exc.code) from None
    try:
        # A frame that says it holds more than the listed size is refused before anything is
        # inflated (python-zstandard allocates what the frame declares).
        declared = zstandard.frame_content_size(packed)
        if declared > chunk.size:
            raise zstandard.ZstdError(f"its frame holds {declared} bytes, not {chunk.size}")
        data = zstandard.ZstdDecompressor().decompress(packed, max_output_size=chunk.size)
    except zstandard.ZstdError as exc:
        raise refused(f"chunk {chunk.key} of {where} is not a zstd chunk of its listed size "
                      f"({exc}).") from None
    if len(data) != chunk.size or hashlib.sha256(data).hexdigest() != chunk.digest:
        raise refused(f"chunk {chunk.key} of {where} does not hash to its name: it was altered "
                      "in the store.")
    return data


class ChunkReader:
    """The plain dump a chunk list stands for, read on demand: the list comes from ``source``
    (the stored list object, hashed by the caller), each chunk from ``store``, each checked;
    at the end the whole must be ``plain_sha256``/``plain_size``. A read returns at most what
    is left of the current chunk (no copy of the rest on every read)."""

    def __init__(self, source: Any, store: Store, where: str, plain_sha256: str,
                 plain_size: int) -> None:
        self.source, self.store, self.where = source, store, where
        self.expect = (plain_sha256, plain_size)
        self.todo: Iterator[Chunk] | None = None
        self.buf = memoryview(b"")
        self.pos = 0
        self.whole = hashlib.sha256()
        self.size = 0
        self.ended = False

    def _next(self) -> bool:
        if self.todo is None:
            listing = self.source.read(MAX_LIST + 1)
            self.todo = iter(parse(listing, self.where))
        chunk = next(self.todo, None)
        if chunk is None:
            if not self.ended:
                self.ended = True
                if (self.whole.hexdigest(), self.size) != self.expect:
                    raise refused(f"the chunks of {self.where} do not make the dump the manifest "
                                  "records (its SHA-256 or size differs).")
            return False
        data = read_chunk(self.store, chunk, self.where)
        self.whole.update(data)
        self.size += len(data)
        self.buf, self.pos = memoryview(data), 0
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [bytes(self.buf[self.pos:])]
            self.pos = len(self.buf)
            while self._next():
                parts.append(bytes(self.buf))
                self.pos = len(self.buf)
            return b"".join(parts)
        while self.pos >= len(self.buf):
            if not self._next():
                return b""
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += len(data)
        return data


# --- collection ----------------------------------------------------------------------------


def _lock_key(kind: str, name: str) -> str:
    return f"{LOCKS}{kind}-{name}.json"


def _live(store: Store, kind: str, now: float) -> list[str]:
    """The locks of ``kind`` ("run" or "prune") that are not stale, aged by the store's own
    time of each lock object. What a lock says of itself is not believed: the store is someone
    else's, and a lock that claimed a start in the future (or could not be read) would block
    every collection, or every snapshot, for ever instead of for six hours."""
    live = []
    for key in store.keys(LOCKS):
        name = key[len(LOCKS):]
        if not name.startswith(f"{kind}-") or not name.endswith(".json"):
            continue
        written = _modified(store, key)
        if written is None:
            continue  # gone meanwhile: that run or prune has ended
        # A lock dated ahead of our clock by more than two clocks differ was not written by a
        # run (the store stamps it): it holds nothing back. A store that gives no time at all
        # cannot be judged: counted live, which only delays.
        if math.isnan(written) or -CLOCK_SKEW <= now - written < STALE_LOCK:
            live.append(key)
    return live


@contextlib.contextmanager
def run_lock(store: Store, run: str) -> Iterator[None]:
    """Held while a snapshot may reuse chunks: a prune collects none meanwhile. Waits for a
    prune that is collecting (up to :data:`PRUNE_WAIT`), then refuses (exit 3)."""
    key = _lock_key("run", run)
    deadline = time.monotonic() + PRUNE_WAIT
    while True:
        store.put_bytes(key, json.dumps({"run": run, "started": time.time()}).encode())
        if not _live(store, "prune", time.time()):
            break
        with contextlib.suppress(Exception):
            store.delete(key)
        if time.monotonic() > deadline:
            raise environment(f"a prune has been removing chunks from {store.url} for "
                              f"{PRUNE_WAIT:g} s; try the snapshot again later.")
        time.sleep(2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            store.delete(key)


@dataclass(frozen=True)
class Collected:
    removed: int
    kept_young: int
    blocked_by: tuple[str, ...]  # live run locks: nothing was collected


def collect(store: Store, listings: Iterable[tuple[bytes, str]],
            dry_run: bool = False) -> Collected:
    """Remove every chunk no list of ``listings`` (the kept backups' lists) names and that is
    older than the grace period; nothing while a snapshot runs. ``kept_young`` counts the
    chunks kept for their age (or an Object Lock)."""
    now = time.time()
    runs = _live(store, "run", now)
    if runs:
        return Collected(0, 0, tuple(runs))
    lock = _lock_key("prune", secrets.token_hex(8))
    if not dry_run:
        store.put_bytes(lock, json.dumps({"started": now}).encode())
    try:
        runs = _live(store, "run", now)  # a snapshot that started meanwhile wins
        if runs:
            return Collected(0, 0, tuple(runs))
        named = {c.key for listing, where in listings for c in parse(listing, where)}
        removed = young = 0
        for key in store.keys(PREFIX):
            if key in named or not key.endswith(".zst"):
                continue
            if _age(store, key, now) < grace_seconds():
                young += 1
                continue
            if not dry_run:
                try:
                    store.delete(key)
                except TaydashError:  # under Object Lock (or the server kept it): stays
                    young += 1
                    continue
            removed += 1
        return Collected(removed, young, ())
    finally:
        if not dry_run:
            with contextlib.suppress(Exception):
                store.delete(lock)


def kept_listings(store: Store) -> Iterator[tuple[bytes, str]]:
    """The chunk list of every chunked artifact (key ``*.chunks``) of every manifest in the
    store, believed or not: a chunk any of them names stays. Exit 1 when one cannot be read
    (what it names is unknown, so nothing may be collected)."""
    from taydash_hooks.snapshots import manifest

    for tag in manifest.all_tags(store):
        doc = manifest.load(store, tag)
        for art in doc.artifacts if doc else ():
            if art.key.endswith(".chunks"):
                with store.open(art.key) as fh:
                    yield fh.read(MAX_LIST + 1), art.key


def _modified(store: Store, key: str) -> float | None:
    """When the store wrote ``key``'s current version (its own clock, not the writer's word):
    None when there is no such key, ``nan`` when the store gives no usable time."""
    versions = store.versions(key)
    latest = next((v for v in versions if v.latest), versions[0] if versions else None)
    if latest is None:
        return None
    try:
        when = datetime.fromisoformat(latest.modified.replace("Z", "+00:00"))
    except ValueError:
        return math.nan
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _age(store: Store, key: str, now: float) -> float:
    written = _modified(store, key)
    if written is None or math.isnan(written):
        return 0.0  # unknown: young, kept
    return now - written
