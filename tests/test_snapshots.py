"""Tag-triggered snapshots of real PostgreSQL and VictoriaMetrics into file:// and S3 stores."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing import keys, services
from testing.gitrepo import Repos, run
from testing.snap import Snap, holding_the_dump, wait_for


def test_git_tag_snapshots_everything_and_restores(snap: Snap, tmp_path: Path) -> None:
    proc = snap.tag("v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert "snapshot of v0.1.0 done" in proc.stderr
    assert json.loads(snap.vm.get("/snapshot/list"))["snapshots"] == []  # ours was deleted
    doc = snap.manifest("v0.1.0")
    assert doc["tag"] == "v0.1.0"
    assert doc["tag_object"] == snap.repos.head("refs/tags/v0.1.0")
    assert doc["commit"] == snap.repos.head()
    arts = {a["kind"]: a for a in doc["artifacts"] if not a.get("roles")}
    assert set(arts) == {"postgres", "victoriametrics", "config"}
    assert arts["postgres"]["key"].startswith("db-backups/v0.1.0_")
    # The roles, for a new cluster: pg_dumpall --globals-only, hashed like a dump.
    roles = [a for a in doc["artifacts"] if a.get("roles")]
    assert len(roles) == 1 and roles[0]["key"].endswith("_roles.sql") and roles[0]["sha256"]
    assert b"CREATE ROLE postgres;" in snap.raw_get(roles[0]["key"])
    assert b"PASSWORD" not in snap.raw_get(roles[0]["key"])
    assert arts["postgres"]["key"].endswith(".dump.zst")  # zstd in the stream: pg_dump 15 here
    assert arts["victoriametrics"]["files"]
    assert arts["victoriametrics"]["key"].startswith("vm-backups/v0.1.0_")
    # Debian's vmbackup prints no version: the package that brought it is recorded instead.
    import subprocess

    pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"],
                         capture_output=True, text=True, timeout=30).stdout
    assert doc["tools"]["vmbackup"] == f"victoria-metrics {pkg} (Debian package)", doc["tools"]
    assert f"vmbackup victoria-metrics {pkg}" in snap.cli("backups", "show", "v0.1.0").stdout
    if snap.store_url.startswith("s3://"):
        assert arts["postgres"]["version_id"]
    assert snap.cli("backups", "verify", "v0.1.0", "--deep").returncode == 0
    assert "v0.1.0" in snap.cli("backups", "list").stdout

    # PostgreSQL: a real restore into a new database.
    target = f"{snap.db}_restored"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    assert proc.returncode == 0, proc.stderr
    assert snap.pg.psql("SELECT count(*) FROM readings", db=target) == "500"
    assert "owners not kept" not in proc.stderr  # its objects are the restoring user's own
    again = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    assert again.returncode == 1 and "already exists" in again.stderr
    snap.pg.drop_db(target)

    # VictoriaMetrics: vmrestore into an empty dir, every file re-hashed, data queryable.
    dest = tmp_path / "vm-restored"
    proc = snap.cli("restore", "vm", "v0.1.0", "--storage-data-path", str(dest))
    assert proc.returncode == 0, proc.stderr
    restored = services.start_vm(dest)
    try:
        rows = restored.export(f'snap_metric{{db="{snap.db}"}}')
        assert rows[0]["values"] == [7]
    finally:
        services.stop_vm(restored)

    # Config bundle: decrypted with the recipient's key and unpacked.
    out = tmp_path / "config-restored"
    proc = snap.cli("restore", "config", "v0.1.0", "--dest", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / ".env").read_text() == "SECRET_SETTING=1\n"
    assert (out / "infra" / "app.conf").read_text() == "port = 80\n"


def test_second_snapshot_is_a_no_op(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    before = snap.manifest("v0.1.0")
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 0 and "nothing to do" in proc.stderr
    assert snap.manifest("v0.1.0") == before


def test_fetched_and_non_matching_tags_do_not_snapshot(snap: Snap, tmp_path: Path) -> None:
    assert snap.tag("other-1").returncode == 0
    assert snap.cli("backups", "show", "other-1").returncode == 1
    other = tmp_path / "other"
    run("git", "clone", "-q", str(snap.repos.remote), other)
    run("git", "tag", "v0.9.0", cwd=other)
    run("git", "push", "-q", "origin", "v0.9.0", cwd=other)
    snap.repos.git("fetch", "-q", "--tags", "origin", env=snap.env)
    assert snap.cli("backups", "show", "v0.9.0").returncode == 1
    assert snap.cli("backups", "list", "--json").stdout.strip() == "[]"


def test_flipped_byte_found_by_verify_and_refused_by_restore(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    key = art["key"]
    if snap.store_url.startswith("file://"):
        path = Path(snap.store_url[len("file://"):]) / key
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.chmod(0o644)
        path.write_bytes(bytes(data))
    else:
        import io

        bucket, _, prefix = snap.store_url[len("s3://"):].partition("/")
        client = services.S3Server(*_s3_args(snap)).client()
        name = f"{prefix}/{key}"
        data = bytearray(client.get_object(bucket, name).read())
        data[len(data) // 2] ^= 0x01
        client.put_object(bucket, name, io.BytesIO(bytes(data)), len(data))
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1 and "corrupt" in proc.stdout
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", f"{snap.db}_bad")
    assert proc.returncode == 1 and "corrupt" in proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{snap.db}_bad'") == "0"
    # A taken name is said at once, as what it is: the rest of the dump is not read (nor
    # hashed) to refuse it, and the database that has the name is left alone.
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", snap.db)
    assert proc.returncode == 1 and f"database {snap.db} already exists" in proc.stderr
    assert "corrupt" not in proc.stderr, proc.stderr
    assert snap.pg.psql("SELECT count(*) FROM readings", db=snap.db) == "500"
    if snap.store_url.startswith("s3://"):
        # The recorded version is still there: fetch it, and the corrupt one is refused.
        assert snap.cli("objects", "versions", key).stdout.count("\n") == 2
        good = Path(snap.repos.base) / "good.dump"
        proc = snap.cli("objects", "get", key, "--version-id", art["version_id"], "-o", str(good))
        assert proc.returncode == 0 and "matches the manifest" in proc.stderr, proc.stderr
        import hashlib

        assert hashlib.sha256(good.read_bytes()).hexdigest() == art["sha256"]
        latest = next(line.split("\t")[0] for line in
                      snap.cli("objects", "versions", key).stdout.splitlines() if "latest" in line)
        bad = Path(snap.repos.base) / "bad.dump"
        proc = snap.cli("objects", "get", key, "--version-id", latest, "-o", str(bad))
        assert proc.returncode == 1 and "not saved" in proc.stderr and not bad.exists()
        # Make the recorded version current again, then all is well.
        proc = snap.cli("objects", "promote", key, "--version-id", art["version_id"])
        assert proc.returncode == 0, proc.stderr
        assert snap.cli("backups", "verify", "v0.1.0").returncode == 0


def _s3_args(snap: Snap) -> tuple[str, str, str]:
    endpoint = snap.toml.split('endpoint = "')[1].split('"')[0]
    return endpoint, snap.env["TAYDASH_S3_ACCESS_KEY"], snap.env["TAYDASH_S3_SECRET_KEY"]


def _no_manifest_then_rerun(snap: Snap, failing: subprocess.CompletedProcess[str],
                            fragment: str) -> None:
    assert fragment in failing.stderr, failing.stderr
    assert snap.cli("backups", "show", "v0.1.0").returncode == 1  # no manifest
    keys = snap.cli("backups", "list", "--json")
    assert json.loads(keys.stdout) == []


def test_missing_database_fails_cleanly_and_rerun_succeeds(snap: Snap) -> None:
    broken = snap.toml.replace(f'databases = ["{snap.db}"]', f'databases = ["{snap.db}", "nope_db"]')
    snap.repos.configure(broken)
    proc = snap.tag("v0.1.0")
    assert proc.returncode == 0  # git ignores the committed-state hook's exit
    _no_manifest_then_rerun(snap, proc, "nope_db")
    assert _store_keys(snap, "db-backups/") == []  # the first database's dump was removed too
    snap.repos.configure(snap.toml)
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert snap.manifest("v0.1.0")["tag"] == "v0.1.0"


def _store_keys(snap: Snap, prefix: str) -> list[str]:
    from taydash_hooks import config, git
    from taydash_hooks.snapshots.location import open_store

    repo = git.find_repo(snap.repos.work)
    old = dict(os.environ)
    os.environ.update(snap.env)
    try:
        return open_store(repo, config.load(repo)).keys(prefix)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_vm_down_fails_without_manifest(snap: Snap) -> None:
    down = snap.toml.replace(snap.vm.url, f"http://127.0.0.1:{services.free_port()}")
    snap.repos.configure(down)
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 3
    _no_manifest_then_rerun(snap, proc, "not reachable")
    snap.repos.configure(snap.toml)
    assert snap.cli("snapshot", "v0.1.0").returncode == 0


def test_vmbackup_missing_is_exit_3(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace("[snapshots.victoriametrics]\n",
                                           '[snapshots.victoriametrics]\nvmbackup = "vmbackup-not-here"\n'))
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 3
    _no_manifest_then_rerun(snap, proc, "apt-get install victoria-metrics")
    # A vmbackup that fails after our snapshot was made: the snapshot is deleted anyway.
    snap.repos.configure(snap.toml.replace("[snapshots.victoriametrics]\n",
                                           '[snapshots.victoriametrics]\nvmbackup = "false"\n'))
    proc = snap.cli("snapshot", "v0.1.0", "--only", "victoriametrics")
    assert proc.returncode == 3 and "vmbackup failed" in proc.stderr, proc.stderr
    assert json.loads(snap.vm.get("/snapshot/list"))["snapshots"] == []
    assert _store_keys(snap, "vm-backups/") == []


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_vmrestores_exit_race_is_run_again_and_a_real_failure_is_not(snap: Snap,
                                                                     tmp_path: Path) -> None:
    """Debian's vmrestore 1.79 can panic on exit ("BUG: there is no http server at ...") when
    a run is shorter than its /metrics server's start, after the work is done: the restored
    files decide, as they always do (every hash against the manifest). The stand-ins below:
    the real vmrestore's work, then that panic; the panic with no work; another panic."""
    assert snap.tag("v0.1.0").returncode == 0
    section = "[snapshots.victoriametrics]\n"

    def restore_with(name: str, script: str, into: str) -> subprocess.CompletedProcess[str]:
        """`restore vm` with the stand-in ``script`` as vmrestore."""
        stand_in = tmp_path / name
        stand_in.write_text("#!/bin/sh\n" + script)
        stand_in.chmod(0o755)
        snap.repos.configure(snap.toml.replace(section, f'{section}vmrestore = "{stand_in}"\n'))
        return snap.cli("restore", "vm", "v0.1.0", "--storage-data-path", str(tmp_path / into))

    marker = tmp_path / "raced"
    proc = restore_with("vmrestore-racy",
                        'vmrestore "$@" 2>/dev/null\n'  # (it may race itself: the same words)
                        f"if [ ! -e {marker} ]; then\n"
                        f"    : > {marker}\n"
                        "    echo 'panic: BUG: there is no http server at \"127.0.0.1:0\"' >&2\n"
                        "    exit 2\n"
                        "fi\n", "vm")
    assert proc.returncode == 0 and "every hash matches" in proc.stderr, proc.stderr
    assert marker.exists()  # it did race once
    # The same words with nothing restored: the hashes refuse it, and the folder is emptied.
    proc = restore_with("vmrestore-liar",
                        "echo 'panic: BUG: there is no http server at \"x\"' >&2\nexit 2\n", "vm1")
    assert proc.returncode == 1 and "does not match the manifest" in proc.stderr, proc.stderr
    assert not any((tmp_path / "vm1").iterdir())
    proc = restore_with("vmrestore-broken",
                        "echo 'panic: runtime error: index out of range' >&2\nexit 2\n", "vm2")
    assert proc.returncode == 3 and "index out of range" in proc.stderr, proc.stderr


def test_pg_dump_killed_mid_stream(snap: Snap) -> None:
    # A big enough table that pg_dump is still streaming when it is killed.
    snap.pg.psql("CREATE TABLE bulk AS SELECT g, repeat(md5(g::text), 20) AS pad "
                 "FROM generate_series(1, 300000) g", db=snap.db)
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "taydash_hooks", "snapshot", "v0.1.0",
                             "--only", "postgres"], cwd=snap.repos.work, env=snap.env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    pid = None
    while pid is None and time.monotonic() < deadline:
        out = run("pgrep", "-f", "--", f"pg_dump .*-Fc .*{snap.db}", check=False).stdout.split()
        pid = int(out[0]) if out else None
        time.sleep(0.01)
    assert pid, "pg_dump never started"
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert "pg_dump killed by signal 9" in err or "pg_dump exited" in err
    assert snap.cli("backups", "show", "v0.1.0").returncode == 1
    assert _store_keys(snap, "db-backups/") == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_snapshot_leaves_nothing(snap: Snap, sig: signal.Signals) -> None:
    snap.pg.psql("CREATE TABLE bulk AS SELECT g, repeat(md5(g::text), 20) AS pad "
                 "FROM generate_series(1, 300000) g", db=snap.db)
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "taydash_hooks", "snapshot", "v0.1.0"],
                            cwd=snap.repos.work, env=snap.env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not run("pgrep", "-f", "--", f"pg_dump .*-Fc .*{snap.db}", check=False).stdout.strip():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert run("pgrep", "-f", "--", f"pg_dump .*-Fc .*{snap.db}", check=False).returncode == 1
    assert _store_keys(snap, "") == []
    # Nothing of the run in the clone either: its journal went with what it had stored.
    assert list((snap.repos.work / ".git" / "taydash" / "runs").glob("*.json")) == []
    assert snap.cli("snapshot", "v0.1.0").returncode == 0


def test_push_of_tag_without_snapshot(snap: Snap) -> None:
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    snap.repos.configure(snap.toml.replace('[snapshots]\n', '[snapshots]\non_push_missing = "block"\n'))
    proc = snap.repos.push("origin", "v0.1.0", env=snap.env)
    assert proc.returncode != 0 and "no snapshot for v0.1.0" in proc.stderr
    assert snap.repos.remote_ref("refs/tags/v0.1.0") is None
    snap.repos.configure(snap.toml)  # on_push_missing = "snapshot" (default)
    proc = snap.repos.push("origin", "v0.1.0", env=snap.env)
    assert proc.returncode == 0, proc.stderr
    assert "snapshot taken" in proc.stderr
    assert snap.manifest("v0.1.0")["tag"] == "v0.1.0"


def test_tag_names_with_slash_and_metacharacters(snap: Snap) -> None:
    name = "v0.1.0/x;touch${IFS}pwned"
    assert snap.tag(name).returncode == 0
    doc = snap.manifest(name)
    assert doc["tag"] == name
    assert not list(snap.repos.work.rglob("pwned*"))
    assert snap.cli("backups", "verify", name).returncode == 0


# --- faults -------------------------------------------------------------------------------


def test_s3_server_gone_mid_upload_then_rerun(repos: Repos, postgres: services.Postgres,
                                              vm: services.VictoriaMetrics, s3: services.S3Server,
                                              bucket: str, gnupghome: keys.Keyring) -> None:
    proxy = services.CuttingProxy(s3.endpoint, limit=20 * 1024 * 1024)
    env = {**os.environ, **s3.env()}
    snap = Snap(repos, postgres, vm, f"s3://{bucket}/b", None, env)
    try:
        # Random text: a dump past one 8 MiB part, so a multipart upload is open when cut.
        postgres.psql("CREATE TABLE bulk AS SELECT g, md5(random()::text) || md5(random()::text) "
                      "|| md5(random()::text) || md5(random()::text) AS pad "
                      "FROM generate_series(1, 500000) g", db=snap.db)
        s3_table = f'[snapshots.s3]\nendpoint = "{proxy.endpoint}"\nregion = "us-east-1"\n'
        toml = snap.toml.replace("[snapshots.postgres]", s3_table + "[snapshots.postgres]")
        snap.repos.configure(toml)
        assert snap.tag("v0.1.0", env={**env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
        proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
        assert proxy.cut.is_set()
        assert proc.returncode == 3, proc.stderr
        assert f"cannot reach the S3 endpoint {proxy.endpoint}" in proc.stderr, proc.stderr
        client = s3.client()
        assert not [o for o in client.list_objects(bucket, "b/", recursive=True)]
        # The server is back (direct, no proxy): the rerun cleans up and succeeds.
        s3_table = f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n'
        snap.repos.configure(snap.toml.replace("[snapshots.postgres]", s3_table + "[snapshots.postgres]"))
        proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
        assert proc.returncode == 0, proc.stderr
        assert not client._list_multipart_uploads(bucket).uploads
        proc = snap.cli("backups", "verify", "v0.1.0")
        # Every stored byte matches; the backup is partial (--only postgres), and says so.
        assert proc.returncode == 1 and "lacks victoriametrics, config" in proc.stdout
        assert [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")] == [
            next(ln for ln in proc.stdout.splitlines() if "lacks" in ln)]
    finally:
        proxy.stop()
        postgres.drop_db(snap.db)


def test_wrong_bucket_and_missing_credentials(repos: Repos, postgres: services.Postgres,
                                             vm: services.VictoriaMetrics, s3: services.S3Server,
                                             bucket: str, gnupghome: keys.Keyring) -> None:
    snap = Snap(repos, postgres, vm, f"s3://{bucket}/b", s3, {**os.environ, **s3.env()})
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    snap.repos.configure(snap.toml.replace(snap.store_url, "s3://no-such-bucket-here/x"))
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 3 and "does not exist" in proc.stderr
    snap.repos.configure(snap.toml)
    bare_env = {k: v for k, v in snap.env.items() if not k.startswith("TAYDASH_S3")}
    proc = snap.cli("snapshot", "v0.1.0", env=bare_env)
    assert proc.returncode == 3 and "no S3 credentials" in proc.stderr
    assert snap.env["TAYDASH_S3_SECRET_KEY"] not in proc.stderr
    assert snap.cli("backups", "show", "v0.1.0").returncode == 1
    assert snap.cli("snapshot", "v0.1.0").returncode == 0
    postgres.drop_db(snap.db)


def test_file_store_not_writable(repos: Repos, postgres: services.Postgres,
                                 vm: services.VictoriaMetrics, gnupghome: keys.Keyring,
                                 tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    mounted = run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", store, check=False).returncode == 0
    try:
        if mounted:
            (store / "filler").write_bytes(b"\0" * 250 * 1024)  # the disk is full
            url = f"file://{store}"
        else:  # no mount(2) here: a store whose folder cannot be created
            (tmp_path / "afile").write_text("")
            url = f"file://{tmp_path / 'afile' / 'store'}"
        snap = Snap(repos, postgres, vm, url, None, dict(os.environ))
        assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
        proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
        assert proc.returncode == 3, proc.stderr
        assert "cannot" in proc.stderr
        leftovers = [p.name for p in store.rglob("*") if p.is_file() and p.name != "filler"] \
            if mounted else []
        assert leftovers == []
        if mounted:
            (store / "filler").unlink()
            proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
            assert proc.returncode == 0, proc.stderr
        postgres.drop_db(snap.db)
    finally:
        if mounted:
            run("umount", store, check=False)


def test_concurrent_snapshots_of_one_tag_are_serialised(snap: Snap, tmp_path: Path) -> None:
    snap.repos.configure(holding_the_dump(snap.toml, tmp_path))
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "taydash_hooks", "snapshot", "v0.1.0"],
                                cwd=snap.repos.work, env=snap.env, stderr=subprocess.PIPE,
                                text=True)

    first = start()
    second = None
    try:
        # The first run is inside its snapshot (the lock held, pg_dump started) ...
        wait_for("the first dump started", (tmp_path / "started").exists, first)
        second = start()
        # ... when the second asks for the lock: it waits, it does not dump beside it.
        assert second.stderr is not None
        said = ""
        while "waiting for it" not in said and (line := second.stderr.readline()):
            said += line
        assert "another snapshot of v0.1.0 is running" in said, said
        assert not (tmp_path / "release").exists() and first.poll() is None
    finally:
        (tmp_path / "release").touch()
        results = [p.communicate(timeout=300)[1] for p in (first, second) if p]
    assert [first.returncode, second.returncode] == [0, 0], results
    assert "snapshot of v0.1.0 done:" in results[0]
    assert "nothing to do" in results[1] and "done:" not in results[1]
    assert len([a for a in snap.manifest("v0.1.0")["artifacts"] if a["kind"] == "postgres"]) == 2
    assert len([a for a in snap.manifest("v0.1.0")["artifacts"] if a.get("roles")]) == 1


def test_stale_lock_is_detected(snap: Snap) -> None:
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    import hashlib

    locks = snap.repos.work / ".git" / "taydash" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (locks / f"snapshot-{hashlib.sha256(b'v0.1.0').hexdigest()[:16]}.lock").write_text(
        f"{dead.pid} v0.1.0\n")
    proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
    assert proc.returncode == 0, proc.stderr
    assert "stale snapshot lock" in proc.stderr


def test_background_mode_logs_and_records_status(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace("[snapshots]\n", '[snapshots]\nmode = "background"\n'))
    proc = snap.tag("v0.1.0")
    assert proc.returncode == 0 and "in the background" in proc.stderr
    status = snap.repos.work / ".git" / "taydash" / "snapshot-status.json"
    deadline = time.monotonic() + 120
    while not status.exists():
        assert time.monotonic() < deadline, "background snapshot never finished"
        time.sleep(0.2)
    doc = json.loads(status.read_text())
    assert doc["tag"] == "v0.1.0" and doc["ok"] is True, doc
    assert Path(doc["log"]).exists() and "done" in Path(doc["log"]).read_text()
    assert snap.manifest("v0.1.0")["tag"] == "v0.1.0"


def test_pre_commit_plugin_snapshots_a_pushed_tag(repos: Repos, gnupghome: keys.Keyring,
                                                  tmp_path: Path) -> None:
    store = tmp_path / "store"
    repos.write(".env", "A=1\n")
    repos.write(".pre-commit-config.yaml", f"""repos:
- repo: local
  hooks:
  - id: taydash-snapshot-pushed-tags
    name: taydash snapshots
    entry: {sys.executable} -m taydash_hooks.hooks.main pre-commit snapshot-pushed-tags
    language: system
    stages: [pre-push]
    pass_filenames: false
    always_run: true
""")
    repos.configure(f'[snapshots]\nstore = "file://{store}"\n'
                    '[snapshots.config]\npaths = [".env"]\nrecipients = ["trusted@example.test"]\n')
    run(sys.executable, "-m", "pre_commit", "install", "-t", "pre-push", cwd=repos.work)
    repos.git("tag", "-a", "-m", "x", "v0.1.0")  # no direct hooks: no snapshot yet
    assert not (store / "manifests" / "v0.1.0.json").exists()
    proc = repos.push("origin", "v0.1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # pre-commit hides a passing hook's output
    doc = json.loads((store / "manifests" / "v0.1.0.json").read_text())
    assert [a["kind"] for a in doc["artifacts"]] == ["config"]


def test_flipped_byte_in_vm_backup_is_caught_by_our_hashes(repos: Repos, postgres: services.Postgres,
                                                          vm: services.VictoriaMetrics,
                                                          gnupghome: keys.Keyring,
                                                          tmp_path: Path) -> None:
    snap = Snap(repos, postgres, vm, f"file://{tmp_path / 'store'}", None, dict(os.environ))
    assert snap.tag("v0.1.0").returncode == 0
    prefix = tmp_path / "store" / next(a for a in snap.manifest("v0.1.0")["artifacts"]
                                       if a["kind"] == "victoriametrics")["key"]
    victim = max((p for p in prefix.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: vmrestore alone would not notice
    victim.write_bytes(bytes(data))
    dest = tmp_path / "restored"
    proc = snap.cli("restore", "vm", "v0.1.0", "--storage-data-path", str(dest))
    assert proc.returncode == 1, proc.stderr
    assert "does not match the manifest" in proc.stderr
    assert not any(dest.iterdir())  # nothing that failed its check is left behind
    proc = snap.cli("backups", "verify", "v0.1.0", "--deep")
    assert proc.returncode == 1 and "does not match" in proc.stdout
    postgres.drop_db(snap.db)


def test_several_databases_and_choosing_one_to_restore(repos: Repos, postgres: services.Postgres,
                                                       vm: services.VictoriaMetrics,
                                                       gnupghome: keys.Keyring,
                                                       tmp_path: Path) -> None:
    snap = Snap(repos, postgres, vm, f"file://{tmp_path / 'store'}", None, dict(os.environ))
    second = f"{snap.db}_b"
    postgres.create_db(second)
    postgres.psql("CREATE TABLE only_in_b (x int); INSERT INTO only_in_b VALUES (1), (2)", db=second)
    snap.repos.configure(snap.toml.replace(f'databases = ["{snap.db}"]',
                                           f'databases = ["{snap.db}", "{second}"]'))
    assert snap.tag("v0.1.0").returncode == 0
    keys_ = sorted(a["key"] for a in snap.manifest("v0.1.0")["artifacts"]
                   if a["kind"] == "postgres" and not a.get("roles"))
    assert sorted(k.rsplit("_", 1)[-1] for k in keys_) == sorted(
        [f"{snap.db.split('_')[-1]}.dump.zst", "b.dump.zst"])  # <tag>_<TS>-<RUN>_<database>.dump.zst
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "nowhere")
    assert proc.returncode == 2 and "--database" in proc.stderr
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", f"{second}_r", "--database", second)
    assert proc.returncode == 0, proc.stderr
    assert postgres.psql("SELECT count(*) FROM only_in_b", db=f"{second}_r") == "2"
    for db in (snap.db, second, f"{second}_r"):
        postgres.drop_db(db)


def test_a_restore_is_one_pass_and_a_late_hash_mismatch_drops_the_database(snap: Snap) -> None:
    # An uncompressed dump: a flipped byte inside a row goes through pg_restore unnoticed, so
    # only the hash at the end of the one pass can catch it, and the restored database goes.
    snap.repos.configure(snap.toml.replace("[snapshots.postgres]\n",
                                           '[snapshots.postgres]\ncompression = "none"\n'))
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    data = bytearray(snap.raw_get(str(art["key"])))
    at = data.find(b"c4ca4238a0b923820dcc509a6f75849b")  # md5('1'), the first row's value
    assert at > 0
    data[at] = ord("d")
    snap.raw_put(str(art["key"]), bytes(data))
    target = f"{snap.db}_late"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    assert proc.returncode == 1, proc.stderr
    assert "was dropped" in proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"


def test_a_dump_pg_restore_cannot_read_creates_no_database(snap: Snap) -> None:
    # Someone with the store's write key swaps the dump (and its hash in the unsigned
    # manifest): the archive's table of contents is read before the new database is made.
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP" + bytes(range(256)) * 4, compressed="")
    target = f"{snap.db}_unreadable"
    for jobs in ([], ["--jobs", "2"]):
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, *jobs)
        assert proc.returncode == 3, proc.stderr
        assert f"pg_restore cannot read the archive {art['key']}" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "failed" not in proc.stderr
        assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
    # Said as what it is when the bytes are not even the zstd stream the manifest promises
    # (pg_restore's own complaint about its cut input is only the consequence).
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP" + bytes(range(256)) * 4, compressed="zstd")
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    assert proc.returncode == 1 and "is not a valid zstd stream" in proc.stderr, proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"


def test_a_dump_larger_than_what_is_read_ahead_comes_back_whole(snap: Snap) -> None:
    # The table of contents is read ahead (a megabyte or two) and replayed in front of the
    # rest: every byte after it must still arrive once, in order.
    snap.pg.psql("CREATE TABLE bulk AS SELECT g, md5(g::text) || md5((g * 7)::text) AS h "
                 "FROM generate_series(1, 120000) g", db=snap.db)
    digest = "SELECT md5(string_agg(g::text || h, ',' ORDER BY g)) FROM bulk"
    assert snap.tag("v0.1.0").returncode == 0
    target = f"{snap.db}_whole"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    try:
        assert proc.returncode == 0, proc.stderr
        assert snap.pg.psql(digest, db=target) == snap.pg.psql(digest, db=snap.db)
        assert snap.pg.psql("SELECT count(*) FROM readings", db=target) == "500"
    finally:
        snap.pg.drop_db(target)


def test_restore_with_jobs(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    target = f"{snap.db}_jobs"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--jobs", "2")
    try:
        assert proc.returncode == 0, proc.stderr
        assert snap.pg.psql("SELECT count(*) FROM readings", db=target) == "500"
    finally:
        snap.pg.drop_db(target)


def test_show_names_each_artifact_and_get_writes_privately(snap: Snap, tmp_path: Path) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    proc = snap.cli("backups", "show", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert f"postgres {snap.db}" in proc.stdout and "postgres roles" in proc.stdout
    assert "tools     " in proc.stdout and "pg_dump" in proc.stdout
    art = snap.artifact("v0.1.0", "postgres")
    out = tmp_path / "copy.dump"
    old = os.umask(0o022)
    try:
        proc = snap.cli("objects", "get", str(art["key"]), "--version-id",
                        str(art["version_id"] or "null"), "-o", str(out))
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_mode & 0o777 == 0o600


def test_a_vm_tool_that_panics_is_told_by_its_panic_not_its_last_stack_frame() -> None:
    # vmrestore once died in the suite with only "main.go:63 +0x37b" to show for it.
    from taydash_hooks.snapshots.kinds.victoriametrics import last_words

    panic = ("2026-11-29T12:00:00.000Z\terror\tlib/backup/actions/restore.go:90\tcannot x\n"
             "panic: runtime error: index out of range [3] with length 3\n\n"
             "goroutine 1 [running]:\nmain.main()\n"
             "\tgithub.com/VictoriaMetrics/VictoriaMetrics/app/vmrestore/main.go:63 +0x37b\n")
    assert last_words(panic) == "panic: runtime error: index out of range [3] with length 3"
    assert last_words("a\nFATAL: cannot open the backup\n") == "FATAL: cannot open the backup"
    assert last_words("") == ""


@pytest.mark.parametrize("snap", ["file"], indirect=True)  # the refusal is about a file store
def test_a_kind_that_cannot_use_the_store_is_refused_before_anything_is_dumped(
        snap: Snap, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    log_calls = f'echo "$*" >> {calls}; exec "$@"'
    toml = snap.toml.replace("[snapshots.postgres]\n", "[snapshots.postgres]\nexec = "
                             f'["sh", "-c", {json.dumps(log_calls)}, "log"]\n')
    toml = toml.replace("[snapshots.victoriametrics]\n",
                        '[snapshots.victoriametrics]\nexec = ["docker", "compose", "exec", "-T", '
                        '"victoriametrics"]\n')
    snap.repos.configure(toml)
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 2, proc.stderr
    assert "exec needs an s3:// store" in proc.stderr and "Nothing was taken" in proc.stderr
    dumped = [c for c in (calls.read_text().splitlines() if calls.exists() else [])
              if " pg_dump " in f" {c} " and "--version" not in c]
    assert dumped == []  # pg_dump never ran: the refusal came first
    assert snap.raw_keys("") == []


def test_a_roles_dump_that_fails_beside_the_database_dump_leaves_nothing(snap: Snap) -> None:
    """pg_dumpall runs beside pg_dump: when it fails (here its role may connect to the
    database it dumps but to neither "postgres" nor "template1", which pg_dumpall needs), the
    snapshot fails with its reason, and neither the dump that succeeded, nor a manifest, nor
    a process of it is left."""
    role = f"limited_{secrets.token_hex(3)}"
    snap.pg.psql(f"CREATE ROLE {role} LOGIN")
    snap.pg.psql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", db=snap.db)
    snap.pg.psql("REVOKE CONNECT ON DATABASE postgres, template1 FROM PUBLIC")
    try:
        snap.repos.configure(snap.toml.replace(f'user = "{snap.pg.user}"', f'user = "{role}"'))
        assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
        proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
        assert proc.returncode == 3, proc.stderr
        assert "pg_dumpall --globals-only failed" in proc.stderr, proc.stderr
        assert "template1" in proc.stderr, proc.stderr  # pg_dumpall's own reason, passed on
        assert f"postgres {snap.db}:" in proc.stderr  # the database's dump had been stored
        assert "privilege.." not in proc.stderr  # one sentence, one full stop
        _no_manifest_then_rerun(snap, proc, "pg_dumpall")
        assert _store_keys(snap, "db-backups/") == []
        left = subprocess.run(["pgrep", "-f", "--", "pg_dumpall"], capture_output=True, text=True)
        assert left.stdout == "", left.stdout
    finally:
        snap.pg.psql("GRANT CONNECT ON DATABASE postgres, template1 TO PUBLIC")
        snap.pg.psql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}", db=snap.db)
        snap.pg.psql(f"DROP ROLE {role}")
    snap.repos.configure(snap.toml)
    assert snap.cli("snapshot", "v0.1.0").returncode == 0
