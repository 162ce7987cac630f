"""Roles: recorded with every snapshot, applied to a new cluster with `restore db --with-roles`."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import services
from testing.snap import Snap

from taydash_hooks.errors import TaydashError
from taydash_hooks.sandbox import wait_for
from taydash_hooks.snapshots.kinds.postgres import database as pg_database
from taydash_hooks.snapshots.kinds.postgres import roles as pg_roles


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
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, *where, "--with-roles",
                        "--trust-unsigned-roles")  # (signatures: test_untrusted_store)
        assert proc.returncode == 0, proc.stderr
        assert f"created {owner}" in proc.stderr and "already there" in proc.stderr
        assert other.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'readings'",
                          db=target) == owner
        assert other.psql(f"SELECT has_table_privilege('{reader}', 'readings', 'SELECT')",
                          db=target) == "t"
        assert other.psql("SELECT count(*) FROM readings", db=target) == "500"
        assert other.psql(f"SELECT rolconnlimit FROM pg_roles WHERE rolname = '{reader}'") == "3"
        # The existing role is not joined: only two roles this restore creates are.
        assert other.psql(f"SELECT pg_has_role('{owner}', '{reader}', 'MEMBER')") == "f"
        assert f"membership {reader} -> {owner} ({reader} exists on the server" in proc.stderr


def test_a_failed_restore_removes_the_roles_it_created(snap: Snap, owned: tuple[str, str]) -> None:
    owner, _ = owned
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP broken dump", compressed="")
    with services.postgres_cluster() as other:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host", other.host,
                        "--port", str(other.port), "--with-roles", "--trust-unsigned-roles")
        assert proc.returncode == 3, proc.stderr
        # The role was created before the dump failed (so its removal is what is tested) ...
        created = next(ln for ln in proc.stderr.splitlines() if "roles: created" in ln)
        assert owner in created.split("created", 1)[1].split(";")[0], proc.stderr
        # ... and is gone again with the database.
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
                        "--port", str(other.port), "--with-roles", "--trust-unsigned-roles")
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
    "ALTER ROLE evil WITH SUPERUSER LOGIN PASSWORD 'attacker';",  # --no-role-passwords
    "ALTER ROLE evil WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc';",
    "CREATE TABLESPACE t LOCATION '/x'; DROP DATABASE prod;",
    'ALTER ROLE U&"\\0061" WITH LOGIN; \\! id',
    "SECURITY LABEL FOR selinux ON ROLE a IS 'x';",
    'CREATE ROLE "";',                              # PostgreSQL has no zero-length name
    'ALTER ROLE U&"a+0062" UESCAPE \'+\' WITH LOGIN;',  # an escape PostgreSQL refuses
    "ALTER ROLE a WITH CONNECTION LIMIT '5';",      # a limit is a number, not a string
])
def test_the_roles_parser_refuses_what_pg_dumpall_never_writes(line: str) -> None:
    with pytest.raises(TaydashError) as err:
        pg_roles.parse(f"SET client_encoding = 'UTF8';\n{line}\n", "the script")
    assert err.value.code == 1
    assert "line 2 of the script is refused" in err.value.message \
        or "line 2 of the script holds a backslash" in err.value.message


def test_a_password_in_a_roles_script_is_refused_for_what_it_says() -> None:
    with pytest.raises(TaydashError) as err:
        pg_roles.parse("CREATE ROLE evil;\nALTER ROLE evil WITH LOGIN PASSWORD 'x';\n", "s")
    # Not a mere parse error: the reason is that taydash never writes one.
    assert "--no-role-passwords never writes one" in err.value.message, err.value.message


def test_the_roles_plan_creates_only_what_is_missing() -> None:
    script = pg_roles.parse(
        "\\restrict abc123\nSET standard_conforming_strings = on;\n"
        'CREATE ROLE "Odd ""Name""";\nALTER ROLE "Odd ""Name""" WITH NOLOGIN CONNECTION LIMIT 2;\n'
        "CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN;\n"
        "ALTER ROLE postgres SET work_mem TO '8MB';\n"
        "ALTER ROLE \"Odd \"\"Name\"\"\" SET search_path TO '$user', 'public';\n"
        'GRANT postgres TO "Odd ""Name""" GRANTED BY postgres;\n'
        "CREATE TABLESPACE fast OWNER postgres LOCATION '/ssd';\n\\unrestrict abc123\n", "s")
    todo = pg_roles.plan(script, {"postgres": True})
    assert todo.created == ['Odd "Name"'] and todo.existing == ["postgres"]
    assert script.left_out == 1
    sql = todo.sql
    assert 'ALTER ROLE "postgres"' not in sql and "TABLESPACE" not in sql and "\\" not in sql
    assert 'CREATE ROLE "Odd ""Name""" WITH NOLOGIN CONNECTION LIMIT 2;' in sql
    assert 'ALTER ROLE "Odd ""Name""" SET "search_path" TO \'$user\', \'public\';' in sql
    # postgres is a superuser: granting it to a new role would hand that role everything.
    assert "GRANT" not in sql and any("postgres exists on the server" in w for w in todo.skipped)
    assert sql.index("BEGIN;") < sql.index("CREATE ROLE") < sql.index("COMMIT;")


def test_names_resolve_as_postgresql_resolves_them() -> None:
    script = pg_roles.parse('ALTER ROLE APP WITH SUPERUSER;\nALTER ROLE "APP" WITH LOGIN;\n'
                            'ALTER ROLE U&"\\0061pp" WITH CREATEDB;\n'
                            "ALTER ROLE U&\"!0062!+000063\" UESCAPE '!' WITH LOGIN;\n", "s")
    assert sorted(script.roles) == ["APP", "app", "bc"]
    todo = pg_roles.plan(script, {"app": False})
    assert todo.existing == ["app"] and sorted(todo.created) == ["APP", "bc"]
    assert 'ALTER ROLE "app"' not in todo.sql and "SUPERUSER" not in todo.sql.replace(
        "NOSUPERUSER", "")


def test_a_forged_script_can_create_but_never_escalate() -> None:
    script = pg_roles.parse("CREATE ROLE evil2;\nALTER ROLE evil2 WITH SUPERUSER NOLOGIN;\n"
                            "GRANT evil2 TO app;\nCREATE ROLE helper;\n"
                            "GRANT pg_execute_server_program TO helper;\n"
                            "GRANT evil2 TO helper WITH ADMIN OPTION;\n"
                            "ALTER ROLE helper SET session_preload_libraries TO 'evil';\n", "s")
    todo = pg_roles.plan(script, {"app": False, "postgres": True})
    assert todo.created == ["evil2", "helper"]
    assert 'CREATE ROLE "evil2" WITH NOLOGIN NOSUPERUSER;' in todo.sql
    assert "GRANT" not in todo.sql and "preload" not in todo.sql
    said = " | ".join(todo.skipped)
    for why in ("SUPERUSER of role evil2", "app is not a role this restore creates",
                "pg_execute_server_program is a predefined role", "evil2 is privileged",
                "setting session_preload_libraries of role helper"):
        assert why in said, said
    # Asked for, the privileged parts go through, still only to roles this restore creates.
    allowed = pg_roles.plan(script, {"app": False}, allow_privileged=True)
    assert 'WITH NOLOGIN SUPERUSER' in allowed.sql
    assert 'GRANT "evil2" TO "helper" WITH ADMIN OPTION;' in allowed.sql
    assert '"app"' not in allowed.sql


def test_memberships_join_only_new_unprivileged_roles_and_never_with_admin() -> None:
    """An existing role may reach anything through its own memberships (here `ops` holds
    pg_execute_server_program and `boss` a superuser there): the script never joins one."""
    script = pg_roles.parse("CREATE ROLE newlogin;\nALTER ROLE newlogin WITH LOGIN;\n"
                            "CREATE ROLE team;\nCREATE ROLE readers;\n"
                            "GRANT ops TO newlogin;\nGRANT boss TO newlogin;\n"
                            "GRANT app TO newlogin WITH ADMIN OPTION;\n"
                            "GRANT team TO newlogin WITH ADMIN OPTION, INHERIT TRUE;\n"
                            "GRANT readers TO app;\nGRANT ghost TO newlogin;\n", "s")
    existing = {"ops": False, "boss": False, "app": False, "readers": False}
    todo = pg_roles.plan(script, existing, memberships=frozenset({("readers", "app")}))
    grants = [line for line in todo.sql.splitlines() if line.startswith("GRANT")]
    assert grants == ['GRANT "team" TO "newlogin" WITH INHERIT TRUE;'], todo.sql
    said = " | ".join(todo.skipped)
    for why in ("ops -> newlogin (ops exists on the server", "boss -> newlogin (boss exists",
                "app -> newlogin (app exists", "ADMIN OPTION of membership team -> newlogin",
                "membership readers -> app (already there)",
                "ghost -> newlogin (ghost does not exist)"):
        assert why in said, said


def test_roles_false_records_none_and_with_roles_says_so(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace("[snapshots.victoriametrics]",
                                           "roles = false\n[snapshots.victoriametrics]"))
    assert snap.tag("v0.1.0").returncode == 0
    assert not [a for a in snap.manifest("v0.1.0")["artifacts"] if a.get("roles")]  # type: ignore[attr-defined]
    assert not [k for k in snap.raw_keys("db-backups/") if "_roles" in k]
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", f"{snap.db}_r", "--with-roles")
    assert proc.returncode == 1 and "no roles script" in proc.stderr, proc.stderr


def _forge_roles(snap: Snap, extra: str) -> None:
    """What a store writer can do: rewrite the roles script (and its manifest entry)."""
    roles = next(a for a in snap.manifest("v0.1.0")["artifacts"] if a.get("roles"))  # type: ignore[attr-defined]
    genuine = snap.raw_get(roles["key"]).decode()
    snap.forge("v0.1.0", roles["key"], (genuine + extra).encode())


def test_a_forged_roles_script_escalates_nothing(snap: Snap, owned: tuple[str, str]) -> None:
    owner, _ = owned
    assert snap.tag("v0.1.0").returncode == 0
    _forge_roles(snap, "ALTER ROLE APP WITH SUPERUSER;\nCREATE ROLE evil2;\n"
                       "ALTER ROLE evil2 WITH SUPERUSER NOLOGIN;\nGRANT evil2 TO app;\n"
                       "GRANT pg_read_server_files TO app;\n")
    with services.postgres_cluster() as other:
        other.psql("CREATE ROLE app LOGIN")
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host",
                        other.host, "--port", str(other.port), "--with-roles",
                        "--trust-unsigned-roles")
        assert proc.returncode == 0, proc.stderr
        assert other.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'app'") == "f"
        assert other.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'evil2'") == "f"
        assert other.psql("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r "
                          "ON r.oid = m.member WHERE r.rolname = 'app'") == "0"
        assert other.psql("SELECT count(*) FROM readings", db="restored") == "500"
        assert f"created {owner}" in proc.stderr
        assert "skipped SUPERUSER of role evil2" in proc.stderr
        assert "evil2 -> app (app is not a role this restore creates)" in proc.stderr


def test_a_forged_membership_reaches_no_privilege_on_the_server(snap: Snap,
                                                                owned: tuple[str, str]) -> None:
    """On the target server `ops` holds pg_execute_server_program and `boss` is a member of a
    superuser: a forged script that joins a new login role to either (or to anything WITH
    ADMIN OPTION) gets no such membership; two new roles are still joined."""
    assert snap.tag("v0.1.0").returncode == 0
    _forge_roles(snap, "CREATE ROLE newlogin;\nALTER ROLE newlogin WITH LOGIN;\n"
                       "CREATE ROLE team;\nALTER ROLE team WITH NOLOGIN;\n"
                       "GRANT ops TO newlogin;\nGRANT boss TO newlogin;\n"
                       "GRANT team TO newlogin WITH ADMIN OPTION;\n"
                       "GRANT readers TO app;\n")
    with services.postgres_cluster() as other:
        other.psql("CREATE ROLE ops; GRANT pg_execute_server_program TO ops;"
                   "CREATE ROLE root2 SUPERUSER; CREATE ROLE boss; GRANT root2 TO boss;"
                   "CREATE ROLE readers; CREATE ROLE app LOGIN; GRANT readers TO app")
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host",
                        other.host, "--port", str(other.port), "--with-roles",
                        "--trust-unsigned-roles")
        assert proc.returncode == 0, proc.stderr
        held = other.psql("SELECT r.rolname || ':' || a.admin_option FROM pg_auth_members a "
                          "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m "
                          "ON m.oid = a.member WHERE m.rolname = 'newlogin'")
        assert held.split() == ["team:false"], held
        # What the new login role can reach: no superuser, no server program.
        assert other.psql("SELECT pg_has_role('newlogin', 'pg_execute_server_program', "
                          "'MEMBER') OR pg_has_role('newlogin', 'root2', 'MEMBER')") == "f"
        for why in ("ops -> newlogin (ops exists on the server", "boss -> newlogin (boss exists",
                    "ADMIN OPTION of membership team -> newlogin",
                    "membership readers -> app (already there)"):
            assert why in proc.stderr, proc.stderr


def test_a_forged_password_refuses_the_roles_script(snap: Snap, owned: tuple[str, str]) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    _forge_roles(snap, "ALTER ROLE evil WITH SUPERUSER LOGIN PASSWORD 'attacker';\n")
    with services.postgres_cluster() as other:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host",
                        other.host, "--port", str(other.port), "--with-roles",
                        "--trust-unsigned-roles")
        assert proc.returncode == 1 and "PASSWORD" in proc.stderr, proc.stderr
        assert other.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'evil'") == "0"
        assert not _exists(other, "restored")


def test_the_database_itself_comes_back(snap: Snap) -> None:
    tok = secrets.token_hex(3)
    owner, ops, reader = f"taylordash_{tok}", f"dash_ops_{tok}", f"grafana_{tok}"
    snap.pg.psql(f"CREATE ROLE {owner} LOGIN; CREATE ROLE {ops} NOLOGIN; CREATE ROLE {reader} LOGIN")
    snap.pg.psql(f"ALTER DATABASE {snap.db} OWNER TO {owner}; "
                 f"GRANT CONNECT ON DATABASE {snap.db} TO {ops}; "
                 f"ALTER DATABASE {snap.db} SET work_mem TO '64MB'; "
                 f"ALTER ROLE {reader} IN DATABASE {snap.db} SET statement_timeout TO '5s'")
    try:
        assert snap.tag("v0.1.0").returncode == 0
        with services.postgres_cluster() as other:
            where = ["--host", other.host, "--port", str(other.port)]
            # Without the roles, what needs them is said as not applied, and the rest applies.
            plain = snap.cli("restore", "db", "v0.1.0", "--target-db", "plain", *where)
            assert plain.returncode == 0, plain.stderr
            said = next(line for line in plain.stderr.splitlines() if "database plain:" in line)
            assert "database plain: encoding UTF8, locale provider libc, " in said, said
            assert "setting work_mem applied; not applied: owner" in said, said
            assert f"grant CONNECT for {ops} (no such role here)" in plain.stderr
            proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", *where,
                            "--with-roles", "--trust-unsigned-roles")
            assert proc.returncode == 0, proc.stderr
            assert other.psql("SELECT pg_get_userbyid(datdba) FROM pg_database "
                              "WHERE datname = 'restored'") == owner
            assert other.psql(f"SELECT has_database_privilege('{ops}', 'restored', 'CONNECT')") == "t"
            settings = other.psql("SELECT string_agg(coalesce(r.rolname, '-') || ':' || "
                                  "array_to_string(s.setconfig, ','), ' ' ORDER BY r.rolname) "
                                  "FROM pg_db_role_setting s JOIN pg_database d "
                                  "ON d.oid = s.setdatabase LEFT JOIN pg_roles r "
                                  "ON r.oid = s.setrole WHERE d.datname = 'restored'")
            assert "-:work_mem=64MB" in settings and f"{reader}:statement_timeout=5s" in settings
            said = next(line for line in proc.stderr.splitlines() if "database restored:" in line)
            assert f"owner {owner}" in said and "not applied" not in said, said
            # Said: login roles came back without their passwords, and how to set one.
            assert f"{owner}" in proc.stderr and "no password" in proc.stderr
            assert "\\password" in proc.stderr
    finally:
        snap.pg.drop_db(snap.db)
        snap.pg.psql(f"DROP ROLE IF EXISTS {owner}; DROP ROLE IF EXISTS {ops}; "
                     f"DROP ROLE IF EXISTS {reader}")


def _database(pg: services.Postgres, name: str) -> str:
    return pg.psql("SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype "
                   f"FROM pg_database WHERE datname = '{name}'")


def test_a_database_comes_back_created_as_it_was(snap: Snap) -> None:
    """Encoding and locale as pg_restore --create gives them, from template0: what the new
    cluster's template1 has of its own neither collides with the dump nor leaks into it."""
    snap.pg.drop_db(snap.db)
    snap.pg.psql(f"CREATE DATABASE {snap.db} TEMPLATE template0 ENCODING 'LATIN1' "
                 "LC_COLLATE 'C' LC_CTYPE 'C'")
    # 'café' and 'Zürich', written and read back as hex: no client encoding in the way.
    snap.pg.psql("CREATE TABLE readings (id int primary key, value text); "
                 "INSERT INTO readings VALUES (1, convert_from('\\x636166e9', 'LATIN1')), "
                 "(2, convert_from('\\x5afc72696368', 'LATIN1'))", db=snap.db)
    values = "SELECT string_agg(encode(convert_to(value, 'UTF8'), 'hex'), ',' ORDER BY id) " \
             "FROM readings"
    before = snap.pg.psql(values, db=snap.db)
    assert before == "636166c3a9,5ac3bc72696368"
    assert snap.tag("v0.1.0").returncode == 0
    with services.postgres_cluster() as other:
        assert _database(other, "template1").startswith("UTF8 ")  # initdb -E UTF8
        other.psql("CREATE TABLE readings (local_addition int)", db="template1")
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host",
                        other.host, "--port", str(other.port))
        assert proc.returncode == 0, proc.stderr
        assert _database(other, "restored") == "LATIN1 C C"
        assert other.psql(values, db="restored") == before
        assert other.psql("SELECT count(*) FROM information_schema.columns "
                          "WHERE column_name = 'local_addition'", db="restored") == "0"
        assert "encoding LATIN1" in proc.stderr and "locale C" in proc.stderr, proc.stderr


def test_database_settings_hold_while_the_data_comes_back(snap: Snap) -> None:
    """A setting the data depends on (a domain's check reads it) is there before the data, as
    with pg_restore --create; one that would stop the restore's own session (read-only by
    default) comes after it, which pg_restore --create cannot restore at all."""
    snap.pg.psql("CREATE DOMAIN bounded AS int "
                 "CHECK (VALUE <= current_setting('app.max_reading')::int); "
                 "CREATE TABLE limits (v bounded)", db=snap.db)
    snap.pg.psql(f"ALTER DATABASE {snap.db} SET app.max_reading TO '1000'")
    snap.pg.psql("INSERT INTO limits VALUES (500)", db=snap.db)
    snap.pg.psql(f"ALTER DATABASE {snap.db} SET default_transaction_read_only TO on")
    assert snap.tag("v0.1.0").returncode == 0
    target = f"{snap.db}_restored"
    try:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
        assert proc.returncode == 0, proc.stderr
        assert snap.pg.psql("SELECT v FROM limits", db=target) == "500"
        assert snap.pg.psql("SHOW default_transaction_read_only", db=target) == "on"
        assert snap.pg.psql("SHOW app.max_reading", db=target) == "1000"
        assert "setting app.max_reading" in proc.stderr
        assert "setting default_transaction_read_only" in proc.stderr
    finally:
        snap.pg.drop_db(target)


def test_a_setting_the_restoring_role_may_not_set_leaves_no_database(snap: Snap) -> None:
    """The settings go with CREATE DATABASE: when the server refuses one (a role without
    superuser restores a database that had a superuser-only setting), the database created a
    moment before is dropped again and the restore fails, naming it."""
    restorer = f"restorer_{secrets.token_hex(3)}"
    snap.pg.psql(f"CREATE ROLE {restorer} LOGIN CREATEDB; "
                 f"ALTER DATABASE {snap.db} SET session_replication_role TO 'replica'")
    assert snap.tag("v0.1.0").returncode == 0
    target = f"{snap.db}_restored"
    try:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--user", restorer)
        assert proc.returncode == 3, proc.stderr
        assert f"creating database {target} failed" in proc.stderr
        assert "(made as the dumped one was: encoding UTF8" in proc.stderr
        assert "setting session_replication_role)" in proc.stderr
        assert not _exists(snap.pg, target)
    finally:
        snap.pg.drop_db(target)
        snap.pg.psql(f"DROP ROLE IF EXISTS {restorer}")


def test_database_statements_are_read_strictly() -> None:
    from taydash_hooks.snapshots.kinds.postgres import database as pg_database

    spec = pg_database.parse(
        "ALTER DATABASE app OWNER TO \"Owner\";\n"
        "ALTER DATABASE app SET work_mem TO '64MB';\n"
        "ALTER DATABASE app SET session_preload_libraries TO 'evil';\n"
        "ALTER DATABASE other SET work_mem TO '1MB';\n"
        "REVOKE CONNECT,TEMPORARY ON DATABASE app FROM PUBLIC;\n"
        "GRANT CONNECT ON DATABASE app TO ops; DROP DATABASE prod;\n"
        "GRANT ALL ON DATABASE app TO ops WITH GRANT OPTION;\n", "app")
    assert spec.owner == "Owner" and spec.unknown == 2
    first, todo = pg_database.before(spec, "app_restored"), pg_database.plan(spec, "app_restored", {"ops"})
    assert first.sql == 'ALTER DATABASE "app_restored" SET "work_mem" TO \'64MB\';\n'
    assert "preload" not in todo.sql and "prod" not in todo.sql and '"other"' not in todo.sql
    assert 'REVOKE CONNECT, TEMPORARY ON DATABASE "app_restored" FROM PUBLIC;' in todo.sql
    assert 'GRANT ALL ON DATABASE "app_restored" TO "ops" WITH GRANT OPTION;' in todo.sql
    assert any("owner Owner" in s for s in todo.skipped)


def test_how_a_database_was_created_is_read_strictly() -> None:
    from taydash_hooks.snapshots.kinds.postgres import database as pg_database

    spec = pg_database.parse(
        "CREATE DATABASE app WITH TEMPLATE = other ENCODING = 'UTF8'';DROP DATABASE prod;--' "
        "LOCALE_PROVIDER = libc LOCALE = 'C' TABLESPACE = fast;\n", "app")
    first = pg_database.before(spec, "app_restored")
    # Rebuilt by us: the value stays one literal, the template is always template0.
    assert first.create == (" WITH TEMPLATE = template0 ENCODING = 'UTF8'';DROP DATABASE prod;--'"
                            " LOCALE_PROVIDER = 'libc' LOCALE = 'C'")
    assert any(s.startswith("template other") for s in first.skipped)
    assert "tablespace fast" in first.skipped
    # Another database's statement, an option twice, two statements, a provider that is none:
    # nothing of it is taken.
    for line in ("CREATE DATABASE other WITH ENCODING = 'LATIN1';",
                 "CREATE DATABASE app WITH ENCODING = 'LATIN1' ENCODING = 'UTF8';",
                 "CREATE DATABASE app WITH ENCODING = 'LATIN1'; DROP DATABASE prod;"):
        spec = pg_database.parse(line + "\n", "app")
        assert spec.created == [] and spec.unknown == 1, line
        assert pg_database.before(spec, "x").create == " WITH TEMPLATE = template0"
    odd = pg_database.before(
        pg_database.parse("CREATE DATABASE app WITH LOCALE_PROVIDER = evil;\n", "app"), "x")
    assert odd.create == " WITH TEMPLATE = template0" and odd.skipped == ["locale_provider evil"]
    # Settings: the ones a restore session would trip over wait for the data.
    spec = pg_database.parse("ALTER DATABASE app SET default_transaction_read_only TO 'on';\n"
                             "ALTER DATABASE app SET statement_timeout TO '1s';\n"
                             "ALTER DATABASE app SET lc_monetary TO 'C';\n"
                             "ALTER DATABASE app CONNECTION LIMIT = 7;\n", "app")
    first, then = pg_database.before(spec, "x"), pg_database.plan(spec, "x", set())
    assert first.sql == 'ALTER DATABASE "x" SET "lc_monetary" TO \'C\';\n'
    assert "default_transaction_read_only" in then.sql and "statement_timeout" in then.sql
    assert 'ALTER DATABASE "x" CONNECTION LIMIT = 7;' in then.sql


def test_setting_names_are_compared_as_postgresql_resolves_them() -> None:
    """PostgreSQL resolves setting names case-insensitively: a quoted "Session_Preload_Libraries"
    or "Role" is the setting itself, and must meet the same filters."""
    script = pg_roles.parse('CREATE ROLE helper;\nALTER ROLE helper SET '
                            '"Session_Preload_Libraries" TO \'evil\';\n'
                            'ALTER ROLE helper SET "ROLE" TO \'postgres\';\n', "s")
    todo = pg_roles.plan(script, {})
    assert "Preload" not in todo.sql and "ROLE\" TO" not in todo.sql, todo.sql
    assert "setting Session_Preload_Libraries of role helper" in " | ".join(todo.skipped)
    spec = pg_database.DatabaseSpec(settings=[("Session_Preload_Libraries", ["'evil'"]),
                                              ("Role", ["'postgres'"]),
                                              ("Statement_Timeout", ["'1s'"])])
    first = pg_database.before(spec, "t")
    assert "Preload" not in first.sql and "Role" not in first.sql, first.sql
    assert "Statement_Timeout" not in first.sql  # after the data, like statement_timeout
    after = pg_database.plan(spec, "t", set())
    assert "Statement_Timeout" in after.sql and "Preload" not in after.sql
    assert {"setting Session_Preload_Libraries", "setting Role"} <= set(after.skipped)


def test_a_dump_of_another_database_swapped_in_is_refused(snap: Snap) -> None:
    """The store writer puts a genuine dump of another database (its own statements about
    that database, its objects) under this backup's entry: nothing is restored, and the
    other database is untouched."""
    assert snap.tag("v0.1.0").returncode == 0
    other = f"{snap.db}_other"
    snap.pg.create_db(other)
    try:
        snap.pg.psql(f'ALTER DATABASE "{other}" SET work_mem TO \'7MB\';'
                     "CREATE TABLE planted (id int)", db=other)
        dump = snap.pg_dump(database=other)
        art = snap.artifact("v0.1.0", "postgres")
        snap.forge("v0.1.0", str(art["key"]), dump, compressed="")
        target = f"{snap.db}_swapped"
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
        assert proc.returncode == 1, proc.stderr
        assert f"is a dump of database '{other}'" in proc.stderr, proc.stderr
        assert not _exists(snap.pg, target)
        assert snap.pg.psql(f"SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d "
                            f"ON d.oid = s.setdatabase WHERE d.datname = '{other}'") == "1"
        drill = snap.cli("drill", "--last", "1")
        assert drill.returncode == 1 and f"is a dump of database '{other}'" in \
            drill.stdout + drill.stderr
    finally:
        snap.pg.drop_db(other)


def test_a_roles_script_changed_only_in_its_line_endings_is_refused(
        snap: Snap, owned: tuple[str, str]) -> None:
    """The same statements with CRLF line endings are other bytes than the manifest signed
    for: refused before anything is applied."""
    assert snap.tag("v0.1.0").returncode == 0
    roles = next(a for a in snap.manifest("v0.1.0")["artifacts"] if a.get("roles"))  # type: ignore[attr-defined]
    genuine = snap.raw_get(roles["key"])
    assert b"\r\n" not in genuine
    snap.raw_put(roles["key"], genuine.replace(b"\n", b"\r\n"))
    with services.postgres_cluster() as other:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", "restored", "--host",
                        other.host, "--port", str(other.port), "--with-roles",
                        "--trust-unsigned-roles")
        assert proc.returncode == 1, proc.stderr
        assert f"{roles['key']} is corrupt: SHA-256" in proc.stderr, proc.stderr
        assert other.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{owned[0]}'") == "0"
        assert not _exists(other, "restored")


def test_a_restore_without_roles_says_which_owners_it_did_not_keep(
        snap: Snap, owned: tuple[str, str]) -> None:
    """pg_restore --no-owner gives every object to the restoring user: the output says so,
    names the dump's owners and the flag that keeps them; with it, nothing of the kind."""
    owner, _ = owned
    assert snap.tag("v0.1.0").returncode == 0
    plain, kept = f"{snap.db}_plain", f"{snap.db}_kept"
    try:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", plain)
        assert proc.returncode == 0, proc.stderr
        assert snap.pg.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'readings'",
                            db=plain) == snap.pg.user
        assert (f"owners not kept: every object in {plain} now belongs to {snap.pg.user} "
                f"(the dump's owners: {owner})") in proc.stderr, proc.stderr
        assert "--with-roles to keep them" in proc.stderr
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", kept, "--with-roles",
                        "--trust-unsigned-roles")
        assert proc.returncode == 0, proc.stderr
        assert snap.pg.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'readings'",
                            db=kept) == owner
        assert "owners not kept" not in proc.stderr
    finally:
        snap.pg.drop_db(plain)
        snap.pg.drop_db(kept)


def test_into_empty_replaces_only_an_empty_database_and_puts_it_back_on_failure(
        snap: Snap) -> None:
    """A fresh stack's PostgreSQL already has an empty database of the app's name: plain
    restore refuses it and names --into-empty; with it, the dump's database takes its place.
    A database with anything in it, or with someone connected, is never replaced, and a
    restore that fails leaves the empty database as it was."""
    assert snap.tag("v0.1.0").returncode == 0
    fresh = f"{snap.db}_fresh"
    snap.pg.psql(f'CREATE ROLE "{fresh}_owner"')
    snap.pg.psql(f'CREATE DATABASE "{fresh}" OWNER "{fresh}_owner"')
    try:
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", fresh)
        assert proc.returncode == 1 and "--into-empty" in proc.stderr, proc.stderr
        # Someone connected (the app, starting): said, nothing replaced.
        held = subprocess.Popen(["psql", "-X", "-h", snap.pg.host, "-p", str(snap.pg.port), "-U",
                                 snap.pg.user, "-d", fresh, "-c", "SELECT pg_sleep(30)"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: snap.pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE "
                                          f"datname = '{fresh}'") == "1", "the app's session")
            proc = snap.cli("restore", "db", "v0.1.0", "--target-db", fresh, "--into-empty")
            assert proc.returncode == 1 and "stop what is connected to it" in proc.stderr
        finally:
            held.kill()
            held.wait()
            # (the server's side of a killed client sleeps on until it is told)
            snap.pg.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         f"WHERE datname = '{fresh}'")
            wait_for(lambda: snap.pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE "
                                          f"datname = '{fresh}'") == "0", "the session's end")
        assert _exists(snap.pg, fresh)
        # A restore that fails half-way (the dump flipped in the store): the empty database
        # is there again, with its owner.
        art = snap.artifact("v0.1.0", "postgres")
        good = snap.raw_get(str(art["key"]))
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        snap.raw_put(str(art["key"]), bytes(bad))
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", fresh, "--into-empty")
        assert proc.returncode != 0, proc.stderr
        assert snap.pg.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database "
                            f"WHERE datname = '{fresh}'") == f"{fresh}_owner"
        assert snap.pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'readings'",
                            db=fresh) == "0"
        snap.raw_put(str(art["key"]), good)
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", fresh, "--into-empty")
        assert proc.returncode == 0, proc.stderr
        assert snap.pg.psql("SELECT count(*) FROM readings", db=fresh) == "500"
        # Now it holds something: --into-empty refuses to replace it.
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", fresh, "--into-empty")
        assert proc.returncode == 1 and "holds" in proc.stderr and "of its own" in proc.stderr
        assert snap.pg.psql("SELECT count(*) FROM readings", db=fresh) == "500"
    finally:
        snap.pg.drop_db(fresh)
        snap.pg.psql(f'DROP ROLE IF EXISTS "{fresh}_owner"')
