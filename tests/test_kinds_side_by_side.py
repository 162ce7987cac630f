"""The kinds of one snapshot run side by side; a failure of one aborts all, with no manifest."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta

from testing.services import free_port
from testing.snap import Snap


def _interval(art: dict[str, object]) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(str(art["started"]))
    return start, start + timedelta(seconds=float(art["seconds"]))  # type: ignore[arg-type]


def test_kinds_are_taken_at_the_same_time(snap: Snap) -> None:
    # Enough rows that the dump takes a moment, so "side by side" is visible in the manifest.
    snap.pg.psql("INSERT INTO readings SELECT g, repeat(md5(g::text), 20) "
                 "FROM generate_series(1001, 150000) g", db=snap.db)
    assert snap.tag("v0.1.0").returncode == 0
    arts = {a["kind"]: a for a in snap.manifest("v0.1.0")["artifacts"] if not a.get("roles")}
    pg, vm, bundle = (_interval(arts[k]) for k in ("postgres", "victoriametrics", "config"))
    # The database and VictoriaMetrics were taken at once, not one after the other; the small
    # config bundle started before the dump was done.
    assert max(pg[0], vm[0]) < min(pg[1], vm[1]), arts
    assert bundle[0] < pg[1], arts


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
