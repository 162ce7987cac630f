"""Real services on loopback, each in a temp dir: PostgreSQL, VictoriaMetrics, S3."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taydash_hooks.sandbox import PgCluster, VmServer, free_port, pg_bindir, wait_for
from taydash_hooks.sandbox import start_postgres as _start_postgres
from taydash_hooks.sandbox import start_vm as _start_vm
from testing.gitrepo import ROOT
from testing.skip import require

if TYPE_CHECKING:
    from taydash_hooks.store.s3 import S3Store

# --- PostgreSQL ---------------------------------------------------------------------


class Postgres(PgCluster):
    """The throwaway cluster, with test conveniences."""

    def create_db(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def drop_db(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """initdb + pg_ctl on a free port; as the postgres user when we are root."""
    require("pg_dump", "apt-get install postgresql-client")
    if pg_bindir() is None:
        require("initdb", "apt-get install postgresql")
    cluster = _start_postgres()
    pg = Postgres(cluster.host, cluster.port, cluster.user, cluster.base, cluster.bindir,
                  cluster.as_user)
    try:
        yield pg
    finally:
        pg.stop()


# --- VictoriaMetrics ------------------------------------------------------------------


class VictoriaMetrics(VmServer):
    def samples(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of ``match`` as they are searchable now (no series: an empty list);
        each row has ``metric``, ``values`` and ``timestamps`` (milliseconds)."""
        import json
        import urllib.parse

        body = self.get("/api/v1/export?" + urllib.parse.urlencode({"match[]": match}))
        return [json.loads(line) for line in body.decode().splitlines()]

    def export(self, match: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Raw samples of ``match``, waiting until freshly ingested series are searchable."""
        rows: list[dict[str, Any]] = []

        def found() -> bool:
            rows[:] = self.samples(match)
            return bool(rows)

        wait_for(found, f"series {match}", timeout)
        return rows

    def settle(self) -> None:
        """Make every sample pushed so far searchable, with no stale answer cached.

        Backfilled samples become searchable a moment after their push, and the per-day index
        entries of a new day separately from the samples. A query in between caches "no
        series" for its days until the index's flush callback runs, up to 10 s later
        (VictoriaMetrics 1.79, lib/mergeset/table.go): the first query of the newest days
        then finds nothing. force_flush makes both searchable and runs that callback at once;
        resetting the rollup cache drops results computed before the backfill (VictoriaMetrics'
        advice for backfilling). Call it after the last push and before the first query.
        """
        self.get("/internal/force_flush")
        self.get("/internal/resetRollupResultCache")

    def query(self, expr: str, when: float) -> list[tuple[dict[str, str], float]]:
        """The instant query ``expr`` at ``when`` (Unix seconds): each series' labels and value."""
        import json
        import urllib.parse

        body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{when:.0f}"}))
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]


def start_vm(storage: Path, *extra: str) -> VictoriaMetrics:
    binary = require("victoria-metrics", "apt-get install victoria-metrics")
    server = _start_vm(storage, binary, *extra)
    return VictoriaMetrics(server.url, server.storage, server.proc)


def stop_vm(vm: VmServer) -> None:
    vm.stop()


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

    def store(self, bucket: str, prefix: str = "team/x", **options: object) -> S3Store:
        """taydash's S3 store on ``bucket`` of this server (``options``: more S3Options)."""
        from taydash_hooks.store import S3Options
        from taydash_hooks.store.s3 import S3Store

        return S3Store(bucket, prefix, S3Options(endpoint=self.endpoint, secure=self.secure,
                                                region="us-east-1", **options),  # type: ignore[arg-type]
                       env=self.env())


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
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
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


S3RVER = ROOT / ".venv" / "s3rver" / "node_modules" / ".bin" / "s3rver"


@contextlib.contextmanager
def s3rver_server(base: Path) -> Iterator[S3Server]:
    """s3rver (npm), a second S3 implementation: it checks access keys, but has no versioning,
    no version listing, no conditional writes and no Object Lock (`make test` installs it)."""
    if not S3RVER.exists():
        require("s3rver", "make s3rver (npm install s3rver into .venv/s3rver)")
    port = free_port()
    data = base / "s3rver-data"
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(S3RVER), "-d", str(data), "-a", "127.0.0.1", "-p", str(port),
                             "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port)).close() is None, "s3rver")
        yield S3Server(f"127.0.0.1:{port}", "S3RVER", "S3RVER", stop=proc)
    finally:
        proc.terminate()
        proc.wait(10)
