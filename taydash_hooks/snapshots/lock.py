"""One snapshot per tag at a time: an flock(2) lock file under the git common dir.

The kernel drops the lock when its holder dies, so a lock left behind by a
killed snapshot is recognised as stale (its pid is gone) and taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from taydash_hooks import process
from taydash_hooks.errors import environment
from taydash_hooks.output import say
from taydash_hooks.statefiles import open_private, private_dir


def tag_id(tag: str) -> str:
    """A short, file-name-safe id of a tag for state files (locks, run journals)."""
    return hashlib.sha256(tag.encode()).hexdigest()[:16]


@contextlib.contextmanager
def tag_lock(state_dir: Path, tag: str, wait: float = 3600.0) -> Iterator[None]:
    """Hold the snapshot lock of ``tag``; wait for another holder up to ``wait`` seconds."""
    folder = private_dir(state_dir / "locks")
    path = folder / f"snapshot-{tag_id(tag)}.lock"
    fd = open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            previous = os.pread(fd, 64, 0).decode(errors="replace").split()
            if previous and previous[0].isdigit() and not process.pid_alive(int(previous[0])):
                say(f"stale snapshot lock of {tag} (pid {previous[0]} is gone); taking it over")
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").split()
            say(f"another snapshot of {tag} is running "
                f"(pid {holder[0] if holder else '?'}); waiting for it")
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise environment(f"gave up waiting for the snapshot lock of {tag}.") from None
                    time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {tag}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # an empty file: released cleanly, not stale
    finally:
        os.close(fd)
