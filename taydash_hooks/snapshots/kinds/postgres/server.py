"""What a restore does on the PostgreSQL server besides pg_restore: the server to restore onto,
the new database (created only when its name is free), the recorded roles it creates (and drops
again when the restore fails), and the drop of a scratch database.

A name from the command line is passed as a psql variable (``:'name'``, ``:"name"``), never
as SQL text; the SQL built from a dump or a roles script (:mod:`.database`,
:mod:`.roles`) has every name and value quoted by us.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks.config import Config, PostgresConfig
from taydash_hooks.errors import environment, refused, usage
from taydash_hooks.output import plural, say
from taydash_hooks.snapshots.kinds.postgres.archive import plain_local
from taydash_hooks.snapshots.kinds.postgres.client import QUERY_TIMEOUT, PgClient, rows
from taydash_hooks.snapshots.kinds.postgres.sql import quote_ident, quote_literal
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.snapshots.stored import download_verified
from taydash_hooks.store import Store

TYPE_CHECKING = False  # what only the annotations name: a snapshot needs neither module
if TYPE_CHECKING:
    from taydash_hooks.snapshots.kinds.postgres import database as pg_database
    from taydash_hooks.snapshots.kinds.postgres import roles as pg_roles

# A database name we create: never something libpq would read as a conninfo
# string or URI (`dbname=prod`, `postgresql://...`).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


def settings(cfg: Config) -> PostgresConfig:
    """``[snapshots.postgres]``, or its defaults when the table is absent (restoring elsewhere)."""
    return (cfg.snapshots.postgres if cfg.snapshots else None) or PostgresConfig()


def on_server(cfg: Config, host: str | None, port: int | None, user: str | None) -> Config:
    """``cfg`` with another PostgreSQL server to restore onto (a scratch or replacement one);
    what is not given stays as configured."""
    import dataclasses

    from taydash_hooks.config import SnapshotsConfig

    pcfg = settings(cfg)
    pcfg = dataclasses.replace(pcfg, host=host or pcfg.host, port=port or pcfg.port,
                               user=user or pcfg.user)
    snaps = cfg.snapshots or SnapshotsConfig()
    return dataclasses.replace(cfg, snapshots=dataclasses.replace(snaps, postgres=pcfg))


def database_exists(cfg: PostgresConfig, name: str) -> bool:
    """Whether ``name`` exists on the server (asked, not guessed from an error message)."""
    found = PgClient.of(cfg).query("SELECT count(*) FROM pg_database WHERE datname = :'name';\n",
                                   what="which databases exist", variables={"name": name})
    return found != [["0"]]


def check_target_name(name: str) -> str:
    """A plain database name (exit 2 otherwise): libpq must never read it as a conninfo."""
    if not _PLAIN_NAME.fullmatch(name):
        raise usage(f"--target-db {name!r} is not a plain database name (letters, digits, "
                    "'_', '.', '-'; at most 63 characters; no '=', spaces or URIs).")
    return name


def taken_message(name: str) -> str:
    """Why a restore into an existing database is refused."""
    return (f"database {name} already exists; restore refuses to touch it (choose another "
            "--target-db, or add --into-empty when it holds nothing of its own, as a fresh "
            "container's POSTGRES_DB does).")


@dataclass(frozen=True)
class EmptyDatabase:
    """An existing database with nothing of its own, as it was: what ``--into-empty``
    replaces, and makes again when the restore fails."""

    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str


# Asked inside the database itself: what it holds beyond what every new database has.
_HOLDS = """SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)')
  + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
  + (SELECT count(*) FROM pg_namespace
    WHERE nspname NOT IN ('public', 'pg_catalog', 'information_schema') AND nspname !~ '^pg_')
  + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'),
  (SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = d.oid),
  r.rolname, pg_encoding_to_char(d.encoding), d.datcollate, d.datctype
FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = current_database();
"""


def empty_database(cfg: PostgresConfig, name: str) -> EmptyDatabase:
    """``name`` as it is, refused (exit 1) unless it holds no object and no setting of its
    own: ``--into-empty`` replaces only what a new database would be."""
    found = PgClient.of(cfg).query(_HOLDS, name, what=f"what database {name} holds")
    if len(found) != 1 or len(found[0]) != 6 or not found[0][0].isdigit():
        raise environment(f"cannot tell what database {name} holds.")
    objects, settings, owner, encoding, collate, ctype = found[0]
    if int(objects):
        raise refused(f"database {name} holds {plural(int(objects), 'object')} of its own; "
                      "--into-empty replaces only an empty database (choose another "
                      "--target-db).")
    if int(settings):
        raise refused(f"database {name} has settings of its own (ALTER DATABASE ... SET); "
                      "--into-empty replaces only a database as new (choose another "
                      "--target-db).")
    return EmptyDatabase(name, owner, encoding, collate, ctype)


def drop_empty(cfg: PostgresConfig, empty: EmptyDatabase) -> None:
    """Drop ``empty`` so the restore can create it as the dump's was; refused while anything
    is connected to it (an app still starting is said as such, never cut off)."""
    res = PgClient.of(cfg).psql(f"DROP DATABASE {quote_ident(empty.name)};\n",
                                timeout=QUERY_TIMEOUT)
    if res.returncode != 0:
        said = " ".join(res.err.split())[-300:] or "refused"
        raise refused(f"database {empty.name} could not be replaced: {said} (stop what is "
                      "connected to it, e.g. the app's container, and run the restore again).")


def remake_empty(cfg: PostgresConfig, empty: EmptyDatabase) -> None:
    """Make ``empty`` again as it was (a failed ``--into-empty`` restore leaves what it found)."""
    q, lit = quote_ident, quote_literal
    PgClient.of(cfg).psql(
        f"CREATE DATABASE {q(empty.name)} OWNER {q(empty.owner)} TEMPLATE template0 "
        f"ENCODING {lit(empty.encoding)} LC_COLLATE {lit(empty.collate)} "
        f"LC_CTYPE {lit(empty.ctype)};\n", stop_on_error=False, timeout=QUERY_TIMEOUT)


# The roles there, each with whether it is privileged (never granted from a script, see pg_roles).
_ROLES = ("SELECT rolname, rolsuper OR rolreplication OR rolbypassrls OR rolcreaterole "
          "FROM pg_roles;\n")

# The name is asked for, the database created and its first settings applied in one psql
# (each client start is a round trip a restore waits for); the roles there come back in the
# same call, two fields a row. 'created' is said once CREATE DATABASE has run. ``options`` and
# ``then`` are SQL pg_database rebuilt with every value quoted; the name is a psql variable.
_CREATE = """SELECT EXISTS (SELECT FROM pg_database WHERE datname = :'target') AS taken \\gset
\\if :taken
SELECT 'taken';
\\quit
\\endif
CREATE DATABASE :"target"{options};
SELECT 'created';
{then}"""


def create_database(cfg: PostgresConfig, name: str, timeout: float,
                    made: pg_database.Applied) -> dict[str, bool]:
    """Create the empty database ``name`` as ``made`` says (:func:`.database.before`: its
    CREATE DATABASE options, then its SQL), refused (exit 1) when it exists; returns the roles
    on the server as :func:`existing_roles` does. When that SQL fails, the database is dropped
    again: the caller gets one that is as asked, or none; and what was asked for is said (a
    server without the dumped locale fails here)."""
    script = _CREATE.format(options=made.create, then=made.sql) + _ROLES
    res = PgClient.of(cfg).psql(script, variables={"target": name}, timeout=timeout)
    found = rows(res)
    if ["taken"] in found:
        raise refused(taken_message(name))
    if res.returncode != 0:
        if ["created"] in found:
            drop(cfg, name)
        raise environment(f"creating database {name} failed: {res.err.strip()[-500:]}"
                          + (f" (made as the dumped one was: {', '.join(made.done)})"
                             if made.done else ""))
    return _privileged(found)


def _privileged(found: list[list[str]]) -> dict[str, bool]:
    return {row[0]: row[1] == "t" for row in found if len(row) == 2}


MAX_ROLES_SCRIPT = 16 * 1024 * 1024


def read_roles(store: Store, art: Artifact, timeout: float) -> pg_roles.Script:
    """The roles script of ``art``: verified against the manifest, decrypted, parsed strictly."""
    with tempfile.TemporaryDirectory(prefix="taydash-roles-") as tmp:
        local = Path(tmp) / "roles.sql"
        download_verified(store, art, local)
        with plain_local(local, art, timeout) as fh:
            data = fh.read(MAX_ROLES_SCRIPT + 1)
    if len(data) > MAX_ROLES_SCRIPT:
        raise refused(f"the roles script {art.key} is larger than {MAX_ROLES_SCRIPT} bytes.")
    from taydash_hooks.snapshots.kinds.postgres import roles as pg_roles

    return pg_roles.parse(data.decode("utf-8", "replace"), f"the roles script {art.key}")


def existing_roles(cfg: PostgresConfig) -> dict[str, bool]:
    """The roles on the server ``cfg`` points at, each with whether it is privileged there
    (superuser, replication, bypassrls or createrole: never granted from a script)."""
    return _privileged(PgClient.of(cfg).query(_ROLES, what="which roles exist"))


_MEMBERSHIPS = ("SELECT r.rolname, m.rolname FROM pg_auth_members a "
                "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member;\n")


def existing_memberships(cfg: PostgresConfig) -> frozenset[tuple[str, str]]:
    """(granted, member) of every membership on the server ``cfg`` points at."""
    found = PgClient.of(cfg).query(_MEMBERSHIPS, what="which memberships exist")
    return frozenset((row[0], row[1]) for row in found if len(row) == 2)


def apply_roles(cfg: PostgresConfig, store: Store, art: Artifact, timeout: float,
                allow_privileged: bool = False) -> list[str]:
    """Create the recorded roles the server lacks (in one transaction); the ones it has are
    left exactly as they are, and nothing privileged is granted unless ``allow_privileged``
    (:mod:`.roles`). Says what was created and what was not; returns the roles created."""
    from taydash_hooks.snapshots.kinds.postgres import roles as pg_roles

    script = read_roles(store, art, timeout)
    todo = pg_roles.plan(script, existing_roles(cfg), allow_privileged,
                         existing_memberships(cfg))
    if todo.created:
        res = PgClient.of(cfg).psql(todo.sql, timeout=timeout)
        if res.returncode != 0:
            raise environment(f"creating the recorded roles on {cfg.host}:{cfg.port} failed, so "
                              f"none was created: {res.err.strip()[-300:]}")
    left = f"; {plural(script.left_out, 'tablespace or parameter grant')} left out" \
        if script.left_out else ""
    say(f"roles: created {', '.join(todo.created) or 'none'}; "
        f"{plural(len(todo.existing), 'role')} already there, left as they are{left}")
    for what in todo.skipped:
        say(f"roles: skipped {what}")
    login = [r for r in todo.created if script.roles[r].flags.get("LOGIN")]
    if login:
        # --no-role-passwords, by design: the store never holds one. Without this line the
        # app's first connection would fail with no hint.
        say(f"roles: {', '.join(login)} can log in but have no password (backups never hold "
            f"one); set it: {password_hint(cfg, login[0])} (or ALTER ROLE ... PASSWORD)")
    return todo.created


def password_hint(cfg: PostgresConfig, role: str) -> str:
    """The command that sets ``role``'s password on the server as taydash reaches it: behind
    an exec prefix (the socket or host is the container's own) through that prefix."""
    import shlex

    psql = ["psql", "-h", cfg.host, "-p", str(cfg.port), "-U", cfg.user, "-c",
            f"\\password {quote_ident(role)}"]
    exec_ = [w for w in cfg.exec if w != "-T"] if cfg.exec else []  # \password asks on a terminal
    return shlex.join([*exec_, *psql])


def drop_roles(cfg: PostgresConfig, roles: list[str]) -> None:
    """Drop roles this run created (a restore that failed after creating them)."""
    if not roles:
        return
    sql = "".join(f"DROP ROLE IF EXISTS {quote_ident(r)};\n" for r in roles)
    PgClient.of(cfg).psql(sql, stop_on_error=False, timeout=120)


def drop(cfg: PostgresConfig, database: str) -> None:
    """Drop a database this run made (a drill's scratch one, a restore that failed)."""
    PgClient.of(cfg).run("dropdb", "--if-exists", "--force", "--", database, timeout=120)
