"""The one entry of the CLI and the hooks: outcomes to exit codes (:class:`errors.Exit`).

Every process we start (``taydash``, the hook shims, the background snapshot
job) runs its work through :func:`run`: a :class:`TaydashError` is one
sentence and its code, SIGINT, SIGTERM and SIGHUP are 130 after the
``finally`` blocks (rollbacks) ran, and anything unexpected is 3 with the
traceback written to a log file under the state dir. Never 1: that code
means "refused by policy" and a crash is not a refusal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from taydash_hooks.errors import Exit, TaydashError

CRASH_LOG_ENV = "TAYDASH_CRASH_DIR"  # tests and packagers: where crash logs go


def _interrupt(signum: int, frame: object) -> None:
    # Raised in the main thread wherever it is: every `finally` and rollback runs.
    raise KeyboardInterrupt


def catch_signals() -> None:
    """A hang-up or kill(1) cleans up like Ctrl-C (temp worktrees, uploads, tags).

    SIGINT is set explicitly too: a process started with SIGINT ignored (a
    background job of a non-interactive shell) would otherwise not roll back.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


def _crash_dir() -> Path:
    override = os.environ.get(CRASH_LOG_ENV)
    if override:
        return Path(override)
    # The repository's state dir when we are in one; found without git (we may
    # be crashing because git is broken).
    from taydash_hooks.gate.fast_path import common_dir

    common = common_dir(os.getcwd())
    if common is not None and os.path.isdir(common):
        return Path(common) / "taydash" / "logs"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "taydash"


def write_crash_log(text: str) -> Path | None:
    """Write a traceback to a new 0600 file under the state dir; its path, or None."""
    import time

    from taydash_hooks.redact import redact
    from taydash_hooks.statefiles import write_private

    text = redact(text)
    try:
        path = _crash_dir() / (f"crash-{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}-"
                               f"{os.getpid()}.log")
        write_private(path, f"taydash {' '.join(sys.argv[1:2])} crashed\n{text}".encode())
        return path
    except (OSError, TaydashError):
        return None


def _error(message: str) -> None:
    # Imported only on the way out: output pulls in logging, which a cached push never needs.
    from taydash_hooks.output import error

    error(message)


def run(work: Callable[[], int]) -> int:
    """Run ``work`` and map its outcome to an exit code (see the module docstring)."""
    try:
        return int(work())
    except TaydashError as exc:
        _error(exc.message)
        return int(exc.code)
    except KeyboardInterrupt:
        _error("interrupted")
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # A reader that went away (`taydash backups list | head`) is not a failure.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(Exit.OK)
    except Exception as exc:
        import traceback  # only now: every hook pays for what the entry imports

        log = write_crash_log(traceback.format_exc())
        where = f"; the traceback is in {log}" if log else ""
        _error(f"unexpected error ({type(exc).__name__}: {exc}){where}. Please report it.")
        return int(Exit.ENVIRONMENT)


def main(work: Callable[[], int]) -> None:
    """Install the signal handlers, :func:`run` ``work``, flush and exit."""
    catch_signals()
    code = run(work)
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    sys.exit(code)
