"""Roles: recorded with every snapshot, applied to a new cluster with `restore db --with-roles`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import services
from testing.snap import Snap

from taydash_hooks.errors import TaydashError
from taydash_hooks.snapshots.kinds import pg_roles


@pytest.fixture
def owned(snap: Snap) -> Iterator[tuple[str, str]]:
    """Tables owned by and granted to roles that are not the default ones."""
    tok = secrets.token_hex(3)
    owner, reader = f"owner_{tok}", f"reader_{tok}"
    snap.pg.psql(f"CREATE ROLE {owner} NOLOGIN; CREATE ROLE {reader} NOLOGIN CONNECTION LIMIT 7;"
                 f"GRANT {reader} TO {owner}")
    snap.pg.psql(f"ALTER TABLE readings OWNER TO {owner}; GRANT SELECT ON readings TO {reader}",
                 db=snap.db)
    yield owner, reader
    snap.pg.drop_db(snap.db)
    snap.pg.psql(f"DROP ROLE IF EXISTS {owner}; DROP ROLE IF EXISTS {reader}")


def _exists(pg: services.Postgres, database: str) -> bool:
    return pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{database}'") == "1"


def test_a_new_cluster_gets_its_roles_back(snap: Snap, owned: tuple[str, str]) -> None:
    owner, reader = owned
    assert snap.tag("v0.1.0").returncode == 0
    with services.postgres_cluster() as other:
        target = "restored"
        where = ["--host", other.host, "--port", str(other.port)]
        # Without the roles the grants fail, and the way out is named.
        plain = snap.cli("restore", "db", "v0.1.0", "--target-db", target, *where)
        assert plain.returncode == 3, plain.stderr
        assert "--with-roles" in plain.stderr and reader in plain.stderr, plain.stderr
        assert not _exists(other, target)
        # An existing role of the same name is left exactly as it is.
        other.psql(f"CREATE ROLE {reader} NOLOGIN CONNECTION LIMIT 3")
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, *where, "--with-roles")
        assert proc.returncode == 0, proc.stderr
        assert f"created {owner}" in proc.stderr and "already there" in proc.stderr
        assert other.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'readings'",
                          db=target) == owner
        assert other.psql(f"SELECT has_table_privilege('{reader}', 'readings', 'SELECT')",
                          db=target) == "t"
        assert other.psql("SELECT count(*) FROM readings", db=target) == "500"
        assert other.psql(f"SELECT rolconnlimit FROM pg_roles WHERE rolname = '{reader}'") == "3"
        assert other.psql(f"SELECT pg_has_role('{owner}', '{reader}', 'MEMBER')") == "t"


def test_a_failed_restore_removes_the_roles_it_created(snap: Snap, owned: tuple[str, str]) -> None:
    owner, _ = owned
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP broken dump", compressed="")
    with services.postgres_cluster() as other:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host", other.host,
                        "--port", str(other.port), "--with-roles")
        assert proc.returncode == 3, proc.stderr
        assert not _exists(other, "restored")
        assert other.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{owner}'") == "0"


def test_a_hostile_roles_script_is_never_run(snap: Snap, owned: tuple[str, str],
                                             tmp_path: Path) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    pwned = tmp_path / "pwned"
    roles = next(a for a in snap.manifest("v0.1.0")["artifacts"] if a.get("roles"))  # type: ignore[attr-defined]
    # Whoever can write the store (and its manifest) tries a psql shell escape.
    snap.forge("v0.1.0", roles["key"], f"CREATE ROLE evil;\n\\! touch {pwned}\n".encode())
    with services.postgres_cluster() as other:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host", other.host,
                        "--port", str(other.port), "--with-roles")
        assert proc.returncode == 1 and "backslash" in proc.stderr, proc.stderr
        assert not pwned.exists()
        assert other.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'evil'") == "0"
        assert not _exists(other, "restored")
    deep = snap.cli("backups", "verify", "v0.1.0", "--deep")
    assert deep.returncode == 1 and "backslash" in deep.stdout + deep.stderr


@pytest.mark.parametrize("line", [
    "CREATE ROLE a; DROP DATABASE prod;",           # a second statement on the line
    "ALTER ROLE a WITH SUPERUSER; SELECT 1;",
    "DROP ROLE postgres;",                          # no statement pg_dumpall writes for roles
    "GRANT a TO b; COPY x FROM PROGRAM 'id';",
    "COMMENT ON ROLE a IS 'x'; \\! id",
    "CREATE ROLE \"a\\\";",
])
def test_the_roles_parser_refuses_what_pg_dumpall_never_writes(line: str) -> None:
    with pytest.raises(TaydashError) as err:
        pg_roles.parse(f"SET client_encoding = 'UTF8';\n{line}\n", "the script")
    assert err.value.code == 1


def test_the_roles_plan_creates_only_what_is_missing() -> None:
    script = pg_roles.parse(
        "\\restrict abc123\nSET standard_conforming_strings = on;\n"
        'CREATE ROLE "Odd ""Name""";\nALTER ROLE "Odd ""Name""" WITH NOLOGIN CONNECTION LIMIT 2;\n'
        "CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN;\n"
        "ALTER ROLE postgres SET work_mem TO '8MB';\n"
        'GRANT "Odd ""Name""" TO postgres GRANTED BY postgres;\n'
        "CREATE TABLESPACE fast OWNER postgres LOCATION '/ssd';\n\\unrestrict abc123\n", "s")
    sql, created, skipped = pg_roles.plan(script, {"postgres"})
    assert created == ['Odd "Name"'] and skipped == ["postgres"] and script.left_out == 1
    assert "ALTER ROLE postgres" not in sql and "TABLESPACE" not in sql and "\\" not in sql
    assert 'GRANT "Odd ""Name""" TO postgres;' in sql  # the grantor is whoever applies it
    assert sql.index("BEGIN;") < sql.index("CREATE ROLE") < sql.index("COMMIT;")


def test_roles_false_records_none_and_with_roles_says_so(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace("[snapshots.victoriametrics]",
                                           "roles = false\n[snapshots.victoriametrics]"))
    assert snap.tag("v0.1.0").returncode == 0
    assert not [a for a in snap.manifest("v0.1.0")["artifacts"] if a.get("roles")]  # type: ignore[attr-defined]
    assert not [k for k in snap.raw_keys("db-backups/") if "_roles" in k]
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", f"{snap.db}_r", "--with-roles")
    assert proc.returncode == 1 and "no roles script" in proc.stderr, proc.stderr
