"""Throwaway PostgreSQL and VictoriaMetrics servers on loopback (for `taydash demo` and tests)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from taydash_hooks import process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:g} s")


def pg_bindir() -> str | None:
    """Where initdb and pg_ctl live (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    path = shutil.which("initdb")
    return os.path.dirname(path) if path else None


@dataclass
class PgCluster:
    host: str
    port: int
    user: str
    base: Path
    bindir: str
    as_user: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def psql(self, sql: str, db: str = "postgres") -> str:
        res = process.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                           "-p", str(self.port), "-U", self.user, "-d", db, "-c", sql], timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"psql failed: {res.err.strip()}")
        return res.out.strip()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            process.run([*self.as_user, f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m",
                         "immediate", "-w", "stop"], timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres() -> PgCluster:
    """initdb + pg_ctl on a free port, trust auth on loopback; as `postgres` when we are root."""
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError("initdb (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="taydash-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root.
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = PgCluster("127.0.0.1", free_port(), "postgres", base, bindir, as_user)
    try:
        for argv in (
            [*as_user, f"{bindir}/initdb", "-D", str(cluster.data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            [*as_user, f"{bindir}/pg_ctl", "-D", str(cluster.data), "-o",
             f"-p {cluster.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
             "-l", str(base / "log"), "-w", "-t", "60", "start"],
        ):
            res = process.run(argv, timeout=120)
            if res.returncode != 0:
                raise RuntimeError(f"{os.path.basename(argv[len(as_user)])} failed: {res.err.strip()}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@dataclass
class VmServer:
    url: str
    storage: Path
    proc: subprocess.Popen[bytes] | None  # None: not ours to stop (a container's)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:  # noqa: S310 - loopback
            return bytes(resp.read())

    def healthy(self) -> bool:
        """Whether it answers /health with OK (a short timeout: callers poll this)."""
        with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:  # noqa: S310
            return bool(resp.read() == b"OK")

    def ingest(self, lines: str) -> None:
        """Prometheus text lines, searchable and in the storage files when this returns."""
        req = urllib.request.Request(self.url + "/api/v1/import/prometheus",  # noqa: S310
                                     data=lines.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30):  # noqa: S310 - loopback
            pass
        self.get("/internal/force_flush")  # searchable
        # force_flush leaves fresh samples in an in-memory part (1.79), which its background
        # merge writes out about 5 s later; a snapshot taken while that merge holds the part
        # sees it in neither place and misses the samples. Making a snapshot writes every
        # in-memory part to disk at once; this one is dropped at once.
        made = json.loads(self.get("/snapshot/create")).get("snapshot")
        if isinstance(made, str) and made:
            self.get("/snapshot/delete?" + urllib.parse.urlencode({"snapshot": made}))

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_vm(storage: Path, binary: str = "victoria-metrics", *extra: str) -> VmServer:
    """victoria-metrics on a free loopback port with its data in ``storage`` (``extra``: more
    flags, e.g. a retention that keeps backdated samples)."""
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"-storageDataPath={storage}", f"-httpListenAddr=127.0.0.1:{port}",
         "-loggerLevel=ERROR", "-search.latencyOffset=0s", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    vm = VmServer(f"http://127.0.0.1:{port}", storage, proc)
    try:
        wait_for(vm.healthy, "victoria-metrics")
    except BaseException:
        vm.stop()
        raise
    return vm
