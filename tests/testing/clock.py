"""The faked clock: libfaketime under the real programs (taydash, git, gpg, pg_dump).

Only the clock is faked; every program is the real one. A Go binary (VictoriaMetrics) reads
the kernel's clock directly and is not affected: samples for it carry their own timestamps.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import itertools
import os
import struct
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path


def library() -> str:
    """Debian's libfaketime for threaded programs (package faketime)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        raise AssertionError("libfaketime is missing: apt-get install faketime (make system-deps)")
    return found[0]


_SHM = "/dev/shm"
_names = itertools.count()
# struct ft_shared_s of libfaketime 0.9.10 (faketime_common.h): ticks, file_idx, then the
# start time as four timespecs (real, monotonic, monotonic raw, boot time). A tv_nsec of -1
# says "not started": the first program of the clock sets it, the others read it.
_UNSTARTED = struct.pack("<QQ" + "qq" * 4, 0, 0, *(0, -1) * 4)


def _shared() -> str:
    """A semaphore and start time for one faked clock, owned by this test process.

    Left to itself, libfaketime makes them in the first program of a clock, named after its
    pid, and removes them when that program exits; a program that was exec'd away never does.
    A program started after its clock's first program ended (the detached background snapshot
    runs vmbackup after ``git tag`` returned) then makes its own, and when a leftover of an
    earlier program with the same pid is in the way, libfaketime exits 1 ("sem_open failed
    and recreation attempts failed"). Passed as FAKETIME_SHARED, these outlive every program
    of the clock and are removed when the suite's process ends.
    """
    name = f"taydash_faketime_{os.getpid()}_{next(_names)}"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
    old = os.umask(0)
    try:  # 0666: programs run as another user (postgres, the drill's user) share the clock
        sem = libc.sem_open(f"/{name}_sem".encode(), os.O_CREAT | os.O_EXCL, 0o666, 1)
        if not sem:
            raise OSError(ctypes.get_errno(), f"sem_open /{name}_sem")
        libc.sem_close(ctypes.c_void_p(sem))
        atexit.register(Path(f"{_SHM}/sem.{name}_sem").unlink, missing_ok=True)
        fd = os.open(f"{_SHM}/{name}_shm", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
        atexit.register(Path(f"{_SHM}/{name}_shm").unlink, missing_ok=True)
    finally:
        os.umask(old)
    with os.fdopen(fd, "wb") as shm:
        shm.write(_UNSTARTED.ljust(4096, b"\0"))
    return f"/{name}_sem /{name}_shm"


def _with(env: Mapping[str, str], spec: str) -> dict[str, str]:
    preload = " ".join(filter(None, [library(), env.get("LD_PRELOAD", "")]))
    # The monotonic clock moves with it (an offset, so intervals stay real): with
    # FAKETIME_DONT_FAKE_MONOTONIC, Python's sleep fails with EINVAL under libfaketime 0.9.10.
    return {**env, "LD_PRELOAD": preload, "FAKETIME": spec, "FAKETIME_NO_CACHE": "1",
            "FAKETIME_SHARED": _shared()}


def shifted(env: Mapping[str, str], seconds: int) -> dict[str, str]:
    """``env`` for programs whose clock runs ``seconds`` ahead of the real one (or behind)."""
    return _with(env, f"{seconds:+d}")


def at(env: Mapping[str, str], when: datetime) -> dict[str, str]:
    """``env`` for programs whose clock starts at ``when`` (UTC) and runs on from there."""
    when = when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return {**_with(env, "@" + when.strftime("%Y-%m-%d %H:%M:%S")), "TZ": "UTC"}
