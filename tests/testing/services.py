"""Real services on loopback, each in a temp dir: PostgreSQL, VictoriaMetrics, S3."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testing.gitrepo import run
from testing.skip import require


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come up within {timeout} s")


# --- PostgreSQL ---------------------------------------------------------------------


def pg_bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    return os.path.dirname(require("initdb", "apt-get install postgresql"))


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    data: Path

    def psql(self, sql: str, db: str = "postgres") -> str:
        return run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
            "-p", str(self.port), "-U", self.user, "-d", db, "-c", sql,
        ).stdout.strip()

    def create_db(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def drop_db(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """initdb + pg_ctl on a free port; as the postgres user when we are root."""
    require("pg_dump", "apt-get install postgresql-client")
    bindir = pg_bindir()
    base = Path(tempfile.mkdtemp(prefix="taydash-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root.
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    port = free_port()
    run(*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
        "-E", "UTF8", "--no-sync", timeout=120)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", base / "log", "-w",
        "-t", "60", "start", timeout=90)
    try:
        yield Postgres("127.0.0.1", port, "postgres", data)
    finally:
        run(*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop",
            check=False, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


# --- VictoriaMetrics ------------------------------------------------------------------


@dataclass
class VictoriaMetrics:
    url: str
    storage: Path
    proc: subprocess.Popen[bytes]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return bytes(resp.read())

    def post(self, path: str, body: bytes) -> None:
        req = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def ingest(self, lines: str) -> None:
        """Prometheus text lines, then a flush so they reach the storage files."""
        self.post("/api/v1/import/prometheus", lines.encode())
        self.get("/internal/force_flush")

    def export(self, match: str, timeout: float = 15.0) -> list[dict[str, object]]:
        """Raw samples of ``match``, waiting until freshly ingested series are searchable."""
        import json

        rows: list[dict[str, object]] = []

        def found() -> bool:
            body = self.get(f"/api/v1/export?match[]={match}")
            rows[:] = [json.loads(line) for line in body.decode().splitlines()]
            return bool(rows)

        wait_for(found, f"series {match}", timeout)
        return rows


def start_vm(storage: Path) -> VictoriaMetrics:
    binary = require("victoria-metrics", "apt-get install victoria-metrics")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"-storageDataPath={storage}", f"-httpListenAddr=127.0.0.1:{port}",
         "-loggerLevel=ERROR", "-search.latencyOffset=0s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    vm = VictoriaMetrics(f"http://127.0.0.1:{port}", storage, proc)
    try:
        wait_for(lambda: vm.get("/health") == b"OK", "victoria-metrics")
    except BaseException:
        stop_vm(vm)
        raise
    return vm


def stop_vm(vm: VictoriaMetrics) -> None:
    vm.proc.terminate()
    try:
        vm.proc.wait(30)
    except subprocess.TimeoutExpired:
        vm.proc.kill()
        vm.proc.wait()


@contextlib.contextmanager
def victoria_metrics() -> Iterator[VictoriaMetrics]:
    base = Path(tempfile.mkdtemp(prefix="taydash-vm-", dir="/tmp"))
    vm = start_vm(base / "storage")
    try:
        yield vm
    finally:
        stop_vm(vm)
        shutil.rmtree(base, ignore_errors=True)


# --- S3 -------------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint: str  # host:port
    access_key: str
    secret_key: str
    secure: bool = False
    stop: object = None

    def env(self) -> dict[str, str]:
        return {"TAYDASH_S3_ACCESS_KEY": self.access_key,
                "TAYDASH_S3_SECRET_KEY": self.secret_key}

    def client(self):  # type: ignore[no-untyped-def]
        from minio import Minio

        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
                     secure=self.secure, region="us-east-1")


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """A real MinIO when TAYDASH_TEST_S3_ENDPOINT is set, else moto's server on loopback."""
    endpoint = os.environ.get("TAYDASH_TEST_S3_ENDPOINT")
    if endpoint:
        yield S3Server(
            endpoint.removeprefix("http://").removeprefix("https://"),
            os.environ.get("TAYDASH_TEST_S3_ACCESS_KEY", "minioadmin"),
            os.environ.get("TAYDASH_TEST_S3_SECRET_KEY", "minioadmin"),
            secure=endpoint.startswith("https://"),
        )
        return
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        require("moto-server-python-module", "pip install 'moto[server]'")
        raise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"127.0.0.1:{port}", "testing-access", "testing-secret-key", stop=server)
    finally:
        server.stop()


class CuttingProxy:
    """A TCP proxy to a real server that dies after ``limit`` bytes upstream.

    It stands for "the S3 server went away mid-upload": connections are cut
    and new ones refused, over a real socket, with no HTTP mocked.
    """

    def __init__(self, upstream: str, limit: int) -> None:
        import threading

        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.limit = limit
        self.sent = 0
        self.cut = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.cut.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    with self._lock:
                        self.sent += len(data)
                        if self.sent > self.limit:
                            self.stop()
                            return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.cut.set()
        for s in [self.sock, *self.conns]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
