"""Running subprocesses: always an argv list, always a timeout, never a shell.

Every external tool (git, gpg, ssh-keygen, pg_dump, vmbackup) is started
through :func:`run` or :func:`popen`, so a hung tool fails closed and a missing
one gives a sentence with the package that brings it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from taydash_hooks.errors import environment

DEFAULT_TIMEOUT = 120.0

# Which Debian package brings a tool, for the "not found" sentence.
INSTALL_HINTS = {
    "git": "apt-get install git",
    "gpg": "apt-get install gnupg",
    "ssh-keygen": "apt-get install openssh-client",
    "pg_dump": "apt-get install postgresql-client",
    "pg_restore": "apt-get install postgresql-client",
    "psql": "apt-get install postgresql-client",
    "vmbackup": "apt-get install victoria-metrics",
    "vmrestore": "apt-get install victoria-metrics",
    "victoria-metrics": "apt-get install victoria-metrics",
}


@dataclass(frozen=True)
class Result:
    """What a finished process left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


class Timeout(Exception):
    """A process ran past its timeout and was killed with its process group."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"{argv[0]} did not finish within {timeout:g} s and was killed")
        self.argv = tuple(argv)
        self.timeout = timeout


def missing_tool(name: str) -> Exception:
    """The error for a tool that is not on PATH."""
    hint = INSTALL_HINTS.get(os.path.basename(name))
    fix = f" (install it: {hint})" if hint else ""
    return environment(f"{name} was not found on PATH{fix}.")


# Stops for commands run behind an exec prefix, by the pid of the local client (see inside()).
STOP_INSIDE_TIMEOUT = 15.0
_INSIDE: dict[int, list[str]] = {}

# Run inside (by a POSIX sh), ends every process there whose environment carries the mark $1:
# TERM first, KILL a second later for what is left.
_STOP_INSIDE = r"""
signal_marked() {
    for d in /proc/[0-9]*; do
        if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "TAYDASH_RUN=$1"; then
            kill "-$2" "${d#/proc/}" 2>/dev/null && found=1
        fi
    done
}
found=0
signal_marked "$1" TERM
[ "$found" = 1 ] || exit 0
sleep 1
signal_marked "$1" KILL
exit 0
"""


def inside(argv: Sequence[str], prefix_len: int) -> tuple[list[str], list[str] | None]:
    """``argv`` whose first ``prefix_len`` words are an exec prefix (``docker compose exec -T
    SERVICE``), marked so that it can be stopped there, and the command that stops it.

    docker exec forwards no signal: killing our client leaves the command running in the
    container (a pg_dump holding its locks, a vmbackup uploading). So the command starts under
    ``env TAYDASH_RUN=<mark>``, and :func:`kill_group` of its client runs the stop command
    through the same prefix, which ends every process there that carries the mark."""
    if prefix_len <= 0:
        return list(argv), None
    import secrets

    mark = secrets.token_hex(8)
    prefix = list(argv[:prefix_len])
    return ([*prefix, "env", f"TAYDASH_RUN={mark}", *argv[prefix_len:]],
            [*prefix, "sh", "-c", _STOP_INSIDE, "sh", mark])


def _stop_inside(proc: subprocess.Popen[bytes], was_running: bool) -> None:
    stop = _INSIDE.pop(proc.pid, None)
    if stop is None or not was_running:
        return  # the client ended by itself: docker exec returns when the command inside ends
    try:
        # Not through _start: it runs while an abort refuses new processes. Its own session, so
        # that a prefix which hangs (an unreachable host) is killed whole after a while.
        stopper = subprocess.Popen(stop, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return
    try:
        stopper.wait(STOP_INSIDE_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(stopper.pid, signal.SIGKILL)
        stopper.wait()


def kill_group(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """Terminate a process started with ``start_new_session`` and all its children (and, for a
    command behind an exec prefix, the command inside too: see :func:`inside`)."""
    was_running = proc.poll() is None
    try:
        _kill_group(proc, grace)
    finally:
        _stop_inside(proc, was_running)


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # children may outlive the leader
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)


# Every child we started and have not reaped, so that an abort (a failed kind of a
# snapshot, Ctrl-C) can end what other threads are blocked on.
_ACTIVE: set[subprocess.Popen[bytes]] = set()
_ACTIVE_LOCK = threading.Lock()


_ABORTING = threading.Event()


def _start(argv: Sequence[str], inside_prefix: int = 0, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen in its own session, registered for :func:`kill_all` in the same step (an abort
    cannot slip between the start and the registration); ``inside_prefix``: see :func:`inside`."""
    argv, stop = inside(argv, inside_prefix)
    with _ACTIVE_LOCK:
        # While an abort is under way, worker threads start nothing new (the main thread's
        # rollback still may): a kind that was between two tools does not begin the second.
        if _ABORTING.is_set() and threading.current_thread() is not threading.main_thread():
            raise environment(f"{argv[0]} not started: the snapshot is being aborted.")
        try:
            proc = subprocess.Popen(list(argv), start_new_session=True, **kwargs)
        except FileNotFoundError:
            raise missing_tool(argv[0]) from None
        _ACTIVE.add(proc)
        if stop is not None:
            _INSIDE[proc.pid] = stop
        return proc


def _untrack(proc: subprocess.Popen[bytes]) -> None:
    with _ACTIVE_LOCK:
        _ACTIVE.discard(proc)
    if proc.poll() is not None:
        _INSIDE.pop(proc.pid, None)


def kill_all() -> None:
    """Abort: kill every running child process group of this process (threads blocked on them
    return) and let worker threads start no new one until :func:`end_abort`."""
    with _ACTIVE_LOCK:
        _ABORTING.set()
        procs = list(_ACTIVE)
    for proc in procs:
        kill_group(proc, grace=1.0)


def end_abort() -> None:
    """The aborted threads are done: processes may be started again."""
    _ABORTING.clear()


def run(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    stdin: IO[bytes] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    inside_prefix: int = 0,
) -> Result:
    """Run ``argv`` to completion and capture its output.

    ``input`` is a small payload; ``stdin`` an open file to stream (a dump).

    The process gets its own session so that a timeout kills it and every
    child it started. Raises :class:`Timeout` past ``timeout`` seconds and a
    :class:`TaydashError` (exit 3) when the program does not exist. ``inside_prefix``: the
    length of an exec prefix ``argv`` starts with, whose command is stopped inside too.
    """
    proc = _start(argv, inside_prefix, cwd=cwd, env=dict(env) if env is not None else None,
                  stdin=subprocess.PIPE if input is not None else (stdin or subprocess.DEVNULL),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise Timeout(argv, timeout) from None
    except BaseException:
        kill_group(proc)
        raise
    finally:
        _untrack(proc)
    return Result(tuple(argv), proc.returncode, out, err)


@contextlib.contextmanager
def popen(
    argv: Sequence[str],
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    stderr: int | IO[bytes] | None = subprocess.PIPE,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    inside_prefix: int = 0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a streaming process; it and its group are killed if the block fails (and the
    command behind an exec prefix of ``inside_prefix`` words with it)."""
    proc = _start(argv, inside_prefix, cwd=cwd, env=dict(env) if env is not None else None, stdin=stdin,
                  stdout=stdout, stderr=stderr)
    try:
        yield proc
    except BaseException:
        kill_group(proc)
        raise
    finally:
        _untrack(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc.poll() is None:
            kill_group(proc)


def start_detached(argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str],
                   output: IO[bytes]) -> int:
    """Start ``argv`` in a session of its own that outlives us (the background snapshot):
    not tracked for :func:`kill_all`, stdin from /dev/null, stdout and stderr to ``output``.
    Returns its pid."""
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    except FileNotFoundError:
        raise missing_tool(argv[0]) from None
    return proc.pid


def run_logged(argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str],
               output: IO[bytes], timeout: float) -> int:
    """Run ``argv`` with stdout and stderr into ``output``; its exit code.

    Past ``timeout`` its whole process group is killed and :class:`Timeout` raised; when it
    ends, whatever it started is killed too; and if we are killed outright (SIGKILL), a
    :class:`GroupWatchdog` kills the group, so nothing a validation command started outlives us.
    """
    proc = _start(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=output,
                  stderr=subprocess.STDOUT)
    watchdog = GroupWatchdog(proc.pid)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise Timeout(argv, timeout) from None
    finally:
        kill_group(proc)
        watchdog.stop()
        _untrack(proc)


def failure(name: str, rc: int, timed_out: bool, stderr_path: str | None) -> str:
    """Why producer ``name`` gave no complete output: its exit (or timeout) and the end of
    what it wrote to ``stderr_path``."""
    if timed_out:
        return f"{name} timed out and was killed"
    why = f"killed by signal {-rc}" if rc < 0 else f"exited {rc}"
    detail = ""
    if stderr_path:
        with contextlib.suppress(OSError), open(stderr_path, "rb") as fh:
            # The whole error, bounded: libpq's first line names the host and port,
            # its last only asks "Is the server running?".
            lines = fh.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
            detail = ": " + " / ".join(ln.strip() for ln in lines if ln.strip()) if lines else ""
    return f"{name} {why}{detail}".rstrip(".")  # the caller ends the sentence


class ProducerFailed(Exception):
    """The process feeding a stream exited non-zero (or was killed) before its EOF counted."""


class ProducerStream:
    """``read`` from a process's stdout; at EOF the process must have exited 0.

    An upload that reads this stream therefore fails (and aborts) instead of
    storing a truncated dump as complete. A watchdog kills the process group
    after ``timeout`` seconds.
    """

    def __init__(self, proc: subprocess.Popen[bytes], name: str, timeout: float,
                 stderr_path: str | None = None,
                 at_eof: Callable[[], str | None] | None = None) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.at_eof = at_eof  # a last say on EOF: why the data is incomplete, or None
        self.name = name
        self.stderr_path = stderr_path
        self.timed_out = False
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.timed_out = True
        kill_group(self.proc, grace=1.0)

    def read(self, n: int = -1) -> bytes:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read(n)
        if data:
            return data
        rc = self.proc.wait()
        self._timer.cancel()
        if rc != 0 or self.timed_out:
            raise ProducerFailed(self.failure(rc))
        problem = self.at_eof() if self.at_eof else None
        if problem:
            raise ProducerFailed(problem)
        return data

    def failure(self, rc: int) -> str:
        return failure(self.name, rc, self.timed_out, self.stderr_path)

    def close(self) -> None:
        self._timer.cancel()
        kill_group(self.proc, grace=1.0)


class GroupWatchdog:
    """Kills a process group when this process dies, even by SIGKILL.

    A ``sh`` waits on a pipe whose only writer is us; when we exit for any reason
    the kernel closes it, ``read`` returns and the group is killed. On a normal
    end :meth:`stop` kills the watchdog first, so it never fires at a finished
    (and perhaps reused) group id.
    """

    def __init__(self, pgid: int) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self._proc = subprocess.Popen(
                # The group id is an int we format; it reaches sh as $1, never as code.
                # `kill -9 -PGID`: dash's kill takes neither `--` nor `-s KILL` before it.
                ["/bin/sh", "-c", 'read _ ; kill -9 "-$1" 2>/dev/null', "taydash-watchdog",
                 str(int(pgid))],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(read_end)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)
        with contextlib.suppress(OSError):
            os.close(self._write_end)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts: it is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
