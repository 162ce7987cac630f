"""The kinds of one snapshot run side by side; a failure of one aborts all, with no manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from testing.services import free_port
from testing.snap import Snap, holding_the_dump, wait_for


def test_kinds_are_taken_at_the_same_time(snap: Snap, tmp_path: Path) -> None:
    # The database dump is held inside the snapshot; VictoriaMetrics and the config bundle
    # are stored while it is held: they run beside it, not after it.
    snap.repos.configure(holding_the_dump(snap.toml, tmp_path))
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "taydash_hooks", "snapshot", "v0.1.0"],
                            cwd=snap.repos.work, env=snap.env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the dump started", (tmp_path / "started").exists, proc)

        def others_stored() -> bool:
            keys = snap.raw_keys("")
            return (any(k.startswith("vm-backups/v0.1.0_") for k in keys)
                    and any(k.startswith("config-backups/v0.1.0_") for k in keys))

        wait_for("VictoriaMetrics and the config stored while the dump was held",
                 others_stored, proc)
        assert not snap.manifest_exists("v0.1.0")  # the held dump is still part of the run
    finally:
        (tmp_path / "release").touch()
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    arts = {a["kind"] for a in snap.manifest("v0.1.0")["artifacts"]}
    assert arts == {"postgres", "victoriametrics", "config"}


def test_one_failing_kind_aborts_the_others_and_leaves_nothing(snap: Snap) -> None:
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    # pg_dump waits behind a lock for as long as the locker lives; VictoriaMetrics fails at once.
    locker = subprocess.Popen(
        ["psql", "-X", "-h", snap.pg.host, "-p", str(snap.pg.port), "-U", snap.pg.user,
         "-d", snap.db, "-c",
         "BEGIN; LOCK TABLE readings IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        snap.repos.configure(snap.toml.replace(f'url = "{snap.vm.url}"',
                                               f'url = "http://127.0.0.1:{free_port()}"'))
        proc = snap.cli("snapshot", "v0.1.0")
        assert proc.returncode == 3, proc.stderr
        assert "VictoriaMetrics" in proc.stderr and "not reachable" in proc.stderr
        # It ended while pg_dump was still blocked: the failure aborted it, nobody waited.
        assert locker.poll() is None, proc.stderr
        assert json.loads(snap.cli("backups", "list", "--json").stdout) == []
        assert [k for k in snap.raw_keys("db-backups/") + snap.raw_keys("config-backups/")
                if "v0.1.0" in k] == []
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert f"--dbname={snap.db}" not in ps  # no pg_dump left running
    finally:
        locker.kill()
        locker.wait()


def test_two_databases_dump_side_by_side_and_a_failure_leaves_neither(snap: Snap) -> None:
    other = f"{snap.db}_b"
    snap.pg.create_db(other)
    try:
        snap.pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100000) g", db=other)
        two = snap.toml.replace(f'databases = ["{snap.db}"]', f'databases = ["{snap.db}", "{other}"]')
        snap.repos.configure(two)
        assert snap.tag("v0.1.0").returncode == 0
        dumps = [a for a in snap.manifest("v0.1.0")["artifacts"]
                 if a["kind"] == "postgres" and not a.get("roles")]
        assert {a["database"] for a in dumps} == {snap.db, other}
        # One of two databases missing: the snapshot fails and neither dump stays behind.
        snap.repos.configure(two.replace(f'"{other}"', '"no_such_database"'))
        assert snap.tag("v0.2.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
        proc = snap.cli("snapshot", "v0.2.0")
        assert proc.returncode == 3 and "no_such_database" in proc.stderr, proc.stderr
        assert [k for k in snap.raw_keys("db-backups/") if "/v0.2.0_" in f"/{k[11:]}"] == []
    finally:
        snap.pg.drop_db(other)
