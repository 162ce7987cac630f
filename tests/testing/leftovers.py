"""Processes a test leaves running: found by a mark in their environment, killed, reported.

Every test runs with ``TAYDASH_TEST_MARK`` set to a value of its own; whatever it starts
(hooks, taydash, validation commands, stand-ins such as ``sleep 1000``) inherits it. After
the test, a process that still carries the mark was left behind. The suite's services start
unmarked (:func:`unmarked`): they live for the session by design.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

MARK = "TAYDASH_TEST_MARK"

# gpg's own daemons live as long as their keyring by design; the keyring fixtures close them.
DAEMONS = ("gpg-agent", "keyboxd", "dirmngr", "scdaemon")


def marked(mark: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment carries ``mark``."""
    needle = f"{MARK}={mark}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # already ended, waiting for its parent to reap it
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm not in DAEMONS:
            found[int(entry.name)] = cmdline.strip()
    return found


def kill(pids: dict[int, str]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def unmarked() -> Iterator[None]:
    """Start a session service without the current test's mark."""
    saved = os.environ.pop(MARK, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[MARK] = saved


@contextlib.contextmanager
def started(service: AbstractContextManager[T]) -> Iterator[T]:
    """Enter ``service`` unmarked (it may be started in the middle of a test that asked for
    it late), then hand it out for as long as its fixture lives."""
    with contextlib.ExitStack() as stack:
        with unmarked():
            value = stack.enter_context(service)
        yield value
