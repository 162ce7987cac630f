"""zstd in the stream: compress a dump on its way to the store, decompress it on the way back.

pg_dump's own gzip is the bottleneck of a snapshot (about 20 MB/s of table data here);
``pg_dump -Z0`` writes about 76 MB/s and zstd keeps up with it while compressing
better (level 1, see LEVEL). The compressor runs in its own thread; ``zstandard``
releases the GIL while it works, so pg_dump, compression and hashing/uploading overlap.
Memory is a few chunks, whatever the dump's size.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import IO, Any

CHUNK = 1024 * 1024
# Level 1: measured on the bench's realistic table it compresses 186 MiB of -Z0 output in
# 0.41 s to 68 MiB, where level 3 takes 0.99 s for 75 MiB (pg_dump -Fc: 5.9 s, 81 MiB).
LEVEL = 1
_DONE = object()


class ZstdStream:
    """``read`` returns the zstd compression of everything ``source.read`` yields.

    An exception of the source (a producer that failed) surfaces from ``read``, so the
    upload that reads this stream fails instead of storing a truncated dump.
    """

    def __init__(self, source: Any, level: int = LEVEL) -> None:
        import zstandard

        self.source = source
        self._compressor = zstandard.ZstdCompressor(level=level).compressobj()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=4)
        self._buffer = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                raw = self.source.read(CHUNK)
                if not raw:
                    tail = self._compressor.flush()
                    if tail:  # an empty chunk would read as the end
                        self._put(tail)
                    break
                out = self._compressor.compress(raw)
                if out and not self._put(out):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)

    def read(self, n: int = -1) -> bytes:
        # Whole compressed chunks are handed out as they are (no copying into one growing
        # buffer): a caller that wants n bytes gets at most n, perhaps fewer, never none
        # before the end.
        if not self._buffer:
            item = self._queue.get()
            if item is _DONE:
                self._queue.put(_DONE)  # every later read sees the end too
                return b""
            if isinstance(item, BaseException):
                self._queue.put(item)
                raise item
            assert isinstance(item, bytes)
            self._buffer = item
        if n < 0 or n >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=5)


class ZstdReader:
    """``source`` (a zstd stream) decompressed as it is read; a corrupt stream is refused
    (exit 1)."""

    def __init__(self, source: Any) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(source, closefd=False)

    def read(self, n: int = -1) -> bytes:
        try:
            return self._reader.read(n)
        except self._error as exc:
            from taydash_hooks.errors import refused

            raise refused(f"the stored dump is not a valid zstd stream ({exc}).") from None


def _wide(fd: int) -> int:
    """A pipe buffer of 1 MiB where Linux allows it (64 KiB by default: a wake-up per 64 KiB)."""
    import fcntl

    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    return fd


@contextlib.contextmanager
def pumped(source: Any) -> Iterator[IO[bytes]]:
    """``source`` as a real pipe (a child's stdin), copied by a thread. When the child stops
    reading early, the copy stops; an error of ``source`` is raised when the block ends."""
    read_fd, write_fd = os.pipe()
    _wide(write_fd)
    errors: list[BaseException] = []

    def pump() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
        except BrokenPipeError:
            pass  # the reader stopped early; its own failure is reported by the caller
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as plain:
        try:
            yield plain
        finally:
            plain.close()
            thread.join(timeout=30)
            if errors:
                # Also when the block failed: a child that could not read its input failed
                # because of this (a stream that is not zstd, a store that broke off).
                raise errors[0]
