"""The faked clock: libfaketime under the real programs (taydash, git, gpg, pg_dump).

Only the clock is faked; every program is the real one. A Go binary (VictoriaMetrics) reads
the kernel's clock directly and is not affected: samples for it carry their own timestamps.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from datetime import datetime, timezone


def library() -> str:
    """Debian's libfaketime for threaded programs (package faketime)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        raise AssertionError("libfaketime is missing: apt-get install faketime (make system-deps)")
    return found[0]


def _with(env: Mapping[str, str], spec: str) -> dict[str, str]:
    preload = " ".join(filter(None, [library(), env.get("LD_PRELOAD", "")]))
    # The monotonic clock moves with it (an offset, so intervals stay real): with
    # FAKETIME_DONT_FAKE_MONOTONIC, Python's sleep fails with EINVAL under libfaketime 0.9.10.
    return {**env, "LD_PRELOAD": preload, "FAKETIME": spec, "FAKETIME_NO_CACHE": "1"}


def shifted(env: Mapping[str, str], seconds: int) -> dict[str, str]:
    """``env`` for programs whose clock runs ``seconds`` ahead of the real one (or behind)."""
    return _with(env, f"{seconds:+d}")


def at(env: Mapping[str, str], when: datetime) -> dict[str, str]:
    """``env`` for programs whose clock starts at ``when`` (UTC) and runs on from there."""
    when = when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return {**_with(env, "@" + when.strftime("%Y-%m-%d %H:%M:%S")), "TZ": "UTC"}
