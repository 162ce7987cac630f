"""PostgreSQL: stream ``pg_dump -Fc`` through SHA-256 into the store; restore with pg_restore.

No temp file on the way out: memory is bounded by the store's part size.
Passwords come from libpq (.pgpass, PGPASSFILE, PGPASSWORD), never argv.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taydash_hooks import process
from taydash_hooks.config import Config, PostgresConfig
from taydash_hooks.errors import TaydashError, environment, refused, usage
from taydash_hooks.output import Progress, plural, say
from taydash_hooks.results import Check
from taydash_hooks.snapshots import fields
from taydash_hooks.snapshots.compress import ZstdStream, decompressed_pipe, pumped
from taydash_hooks.snapshots.crypt import NoSecretKey, decrypting_stream, encrypting_stream
from taydash_hooks.snapshots.kinds import pg_database, pg_roles
from taydash_hooks.snapshots.kinds import pg_versions as versions
from taydash_hooks.snapshots.kinds.base import Checked, RestoreJob, TakeJob, snapshot_timeout
from taydash_hooks.snapshots.kinds.pg_client import PgClient
from taydash_hooks.snapshots.kinds.place import tool_check
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.snapshots.stored import (
    check_object,
    corrupt_message,
    download_verified,
    judge_hash,
)
from taydash_hooks.store import Store, Written
from taydash_hooks.store.base import CHUNK, HashingReader

DUMPS_AT_ONCE = 2

# A database name we create: never something libpq would read as a conninfo
# string or URI (`dbname=prod`, `postgresql://...`).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class PgDump:
    """What a ``postgres`` artifact records besides its bytes: a database dump, or (``roles``)
    the cluster's roles script."""

    database: str | None = None
    encrypted_to: tuple[str, ...] = ()  # the stored bytes are encrypted to these recipients
    compressed: str = ""  # "zstd" when we compressed it in the stream (.dump.zst)
    roles: bool = False  # pg_dumpall --globals-only, not a database dump
    server_version: str = ""  # the server dumped ("18.6")
    dumped_with: str = ""  # the pg_dump (or pg_dumpall) version that wrote it

    KNOWN = frozenset({"database", "encrypted_to", "compressed", "roles", "server_version",
                       "dumped_with"})

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.database is not None:
            doc["database"] = self.database
        if self.encrypted_to:
            doc["encrypted_to"] = list(self.encrypted_to)
        if self.compressed:
            doc["compressed"] = self.compressed
        if self.roles:
            doc["roles"] = True
        if self.server_version:
            doc["server_version"] = self.server_version
        if self.dumped_with:
            doc["dumped_with"] = self.dumped_with
        return doc

    @classmethod
    def of(cls, art: Artifact) -> PgDump:
        """The fields of ``art``, read strictly (it comes from the store): exit 1 otherwise."""
        with fields.of_artifact(art.kind, art.key, art.fields, cls.KNOWN) as f:
            compressed = fields.string(f, "compressed", True) or ""
            if compressed not in ("", "zstd"):
                raise fields.Bad(f"compressed {compressed!r} is not a compression this "
                                 "version reads")
            return cls(database=fields.string(f, "database", True),
                       encrypted_to=fields.strings(f, "encrypted_to"), compressed=compressed,
                       roles=fields.flag(f, "roles"),
                       server_version=fields.string(f, "server_version", True) or "",
                       dumped_with=fields.string(f, "dumped_with", True) or "")


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


def settings(cfg: Config) -> PostgresConfig:
    """``[snapshots.postgres]``, or its defaults when the table is absent (restoring elsewhere)."""
    return (cfg.snapshots.postgres if cfg.snapshots else None) or PostgresConfig()


def dump_key(tag: str, ts: str, database: str, several: bool) -> str:
    return f"db-backups/{tag}_{ts}_{database}.dump" if several else f"db-backups/{tag}_{ts}.dump"


def native_zstd(cfg: PostgresConfig, database: str) -> bool:
    """Whether this pg_dump compresses with zstd itself (PostgreSQL 16+ built with zstd):
    then pg_restore reads the dump directly.

    Asked, not guessed: a version number says nothing of how it was built, so a schema-only
    dump of no table with ``--compress=zstd`` must succeed (its exit code decides).
    """
    client = PgClient.of(cfg)
    major = versions.major(client.tool_version())
    if major is None or major < 16:
        return False
    return _probe_zstd(client, database)


@functools.lru_cache(maxsize=8)
def _probe_zstd(client: PgClient, database: str) -> bool:
    try:
        res = client.run("pg_dump", "-Fc", "--compress=zstd", "--schema-only",
                         "--table=taydash_zstd_probe_no_such_table", f"--dbname={database}")
    except (process.Timeout, Exception):
        return False
    return res.returncode == 0


def compression_plan(cfg: PostgresConfig) -> tuple[list[str], str]:
    """pg_dump's compression flags, and "zstd" when we compress in the stream instead."""
    if cfg.compression == "gzip":
        return [], ""  # pg_dump -Fc's own default
    if cfg.compression == "none":
        return ["-Z0"], ""
    if cfg.databases and native_zstd(cfg, cfg.databases[0]):
        return ["--compress=zstd"], ""
    return ["-Z0"], "zstd"


def database_exists(cfg: PostgresConfig, name: str) -> bool:
    """Whether ``name`` exists on the server (asked, not guessed from an error message)."""
    rows = PgClient.of(cfg).query("SELECT count(*) FROM pg_database WHERE datname = :'name';\n",
                                  what="which databases exist", variables={"name": name})
    return rows != [["0"]]


def check_target_name(name: str) -> str:
    """A plain database name (exit 2 otherwise): libpq must never read it as a conninfo."""
    if not _PLAIN_NAME.fullmatch(name):
        raise usage(f"--target-db {name!r} is not a plain database name (letters, digits, "
                    "'_', '.', '-'; at most 63 characters; no '=', spaces or URIs).")
    return name


def _stream(cfg: PostgresConfig, tool: str, args: list[str], what: str, label: str, store: Store,
            key: str, timeout: float, encrypt_to: tuple[str, ...], compressed: str) -> Written:
    """Stream the stdout of ``tool`` (pg_dump or pg_dumpall, through the exec prefix) into
    ``key`` (through zstd and/or gpg as asked) and write its ``.sha256`` sidecar: the SHA-256 of
    the stored bytes, so verify needs no secret key. A producer that exits non-zero is ``what``
    failing (exit 3), and nothing stays under ``key``."""
    argv = PgClient.of(cfg).argv(tool, *args)
    with tempfile.NamedTemporaryFile(prefix="taydash-pgdump-", suffix=".err") as err, \
            process.popen(argv, stdout=subprocess.PIPE, stderr=err,
                          inside_prefix=len(cfg.exec)) as proc, \
            contextlib.ExitStack() as stack:
        stream = process.ProducerStream(proc, tool, timeout, err.name)
        stack.callback(stream.close)
        source: Any = stream
        if compressed:
            zstd = ZstdStream(stream)
            stack.callback(zstd.close)
            source = zstd
        if encrypt_to:
            source = stack.enter_context(encrypting_stream(source, encrypt_to, timeout))
        try:
            written: Written = store.put_stream(key, Progress(source, label))  # type: ignore[arg-type]
        except process.ProducerFailed as exc:
            raise environment(f"{what} failed: {exc}.") from None
        except BaseException as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, process.ProducerFailed):
                raise environment(f"{what} failed: {cause}.") from None
            raise
    _sidecar(store, key, written)
    return written


def dump(cfg: PostgresConfig, database: str, store: Store, key: str, timeout: float,
         encrypt_to: tuple[str, ...] = (), plan: tuple[list[str], str] = ([], ""),
         server: str = "") -> Artifact:
    """Stream one database into ``key`` (zstd-compressed in the stream and/or through gpg as
    ``plan`` and ``encrypt_to`` say), with its ``.sha256`` sidecar."""
    flags, compressed = plan
    written = _stream(cfg, "pg_dump", ["-Fc", *flags, f"--dbname={database}"],
                      f"dump of database {database}", f"postgres {database}", store, key,
                      timeout, encrypt_to, compressed)
    say(f"  postgres {database}: {written.size} bytes -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", fields=PgDump(
                        database=database, encrypted_to=encrypt_to, compressed=compressed,
                        server_version=server,
                        dumped_with=PgClient.of(cfg).tool_number()).to_json())


def _sidecar(store: Store, key: str, written: Written) -> None:
    """``<key>.sha256`` in ``sha256sum -c`` format; without it the object is removed again
    (it was never handed over, so no rollback would find it)."""
    try:
        store.put_bytes(f"{key}.sha256", f"{written.sha256}  {key.rsplit('/', 1)[-1]}\n".encode())
    except BaseException:
        with contextlib.suppress(Exception):
            store.delete(key, written.version_id)
        raise


def dump_roles(cfg: PostgresConfig, store: Store, key: str, timeout: float,
               encrypt_to: tuple[str, ...] = (), server: str = "") -> Artifact:
    """``pg_dumpall --globals-only --no-role-passwords`` into ``key`` (through gpg when
    ``encrypt_to``), with its ``.sha256`` sidecar: what a new cluster needs before a restore."""
    written = _stream(cfg, "pg_dumpall", ["--globals-only", "--no-role-passwords"],
                      "pg_dumpall --globals-only", "postgres roles", store, key, timeout,
                      encrypt_to, "")
    say(f"  postgres roles: {written.size} bytes -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", fields=PgDump(
                        encrypted_to=encrypt_to, roles=True, server_version=server,
                        dumped_with=PgClient.of(cfg).tool_number("pg_dumpall")).to_json())


MAX_ROLES_SCRIPT = 16 * 1024 * 1024


def read_roles(store: Store, art: Artifact, timeout: float) -> pg_roles.Script:
    """The roles script of ``art``: verified against the manifest, decrypted, parsed strictly."""
    with tempfile.TemporaryDirectory(prefix="taydash-roles-") as tmp:
        local = Path(tmp) / "roles.sql"
        download_verified(store, art, local)
        with _plain(local, art, timeout) as fh:
            data = fh.read(MAX_ROLES_SCRIPT + 1)
    if len(data) > MAX_ROLES_SCRIPT:
        raise refused(f"the roles script {art.key} is larger than {MAX_ROLES_SCRIPT} bytes.")
    return pg_roles.parse(data.decode("utf-8", "replace"), f"the roles script {art.key}")


def existing_roles(cfg: PostgresConfig) -> dict[str, bool]:
    """The roles on the server ``cfg`` points at, each with whether it is privileged there
    (superuser, replication, bypassrls or createrole: never granted from a script)."""
    rows = PgClient.of(cfg).query(
        "SELECT rolname, rolsuper OR rolreplication OR rolbypassrls OR rolcreaterole "
        "FROM pg_roles;\n", what="which roles exist")
    return {row[0]: row[1] == "t" for row in rows if len(row) == 2}


def apply_roles(cfg: PostgresConfig, store: Store, art: Artifact, timeout: float,
                allow_privileged: bool = False) -> list[str]:
    """Create the recorded roles the server lacks (in one transaction); the ones it has are
    left exactly as they are, and nothing privileged is granted unless ``allow_privileged``
    (:mod:`.pg_roles`). Says what was created and what was not; returns the roles created."""
    script = read_roles(store, art, timeout)
    todo = pg_roles.plan(script, existing_roles(cfg), allow_privileged)
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
            f"one); set it: psql -h {cfg.host} -p {cfg.port} -U {cfg.user} -c '\\password "
            f"{login[0]}' (or ALTER ROLE ... PASSWORD)")
    return todo.created


def drop_roles(cfg: PostgresConfig, roles: list[str]) -> None:
    """Drop roles this run created (a restore that failed after creating them)."""
    if not roles:
        return
    sql = "".join(f"DROP ROLE IF EXISTS {pg_roles.quote_ident(r)};\n" for r in roles)
    PgClient.of(cfg).psql(sql, stop_on_error=False, timeout=120)


def restore(cfg: PostgresConfig, store: Store, artifact: Artifact, target: str, timeout: float,
            roles: Artifact | None = None, with_roles: bool = False,
            allow_privileged: bool = False, jobs: int = 1) -> str:
    """Create ``target`` (refusing an existing one) and restore into it in one pass: store ->
    SHA-256 -> decrypt -> decompress -> pg_restore; when the hash does not match at the end, the
    new database is dropped and the restore refused. ``jobs`` > 1 restores in parallel from a
    spooled file (pg_restore -j reads a file, not a pipe).

    ``with_roles`` first creates the roles recorded in ``roles`` that the server lacks and then
    keeps the dump's owners; without it, objects belong to the restoring user. Whatever fails,
    the database and the roles this call created are removed again.
    """
    check_target_name(target)
    if PgDump.of(artifact).roles:
        raise usage(f"{artifact.key} is the roles script, not a database dump.")
    if database_exists(cfg, target):
        raise refused(f"database {target} already exists; restore refuses to touch it "
                      "(choose another --target-db).")
    if with_roles and roles is None:
        raise refused("this backup has no roles script (taken with roles = false, or before "
                      "taydash recorded roles); restore without --with-roles.")
    if jobs > 1 and cfg.exec:
        raise usage("--jobs needs pg_restore on this host: behind an exec prefix it can only "
                    "read stdin, and parallel restore reads a file.")
    created_roles = (apply_roles(cfg, store, roles, timeout, allow_privileged)
                     if with_roles and roles else [])
    try:
        created = PgClient.of(cfg).run("createdb", "--", target, timeout=120)
        if created.returncode != 0:
            raise environment(f"createdb {target} failed: {created.err.strip()[-500:]}")
        try:
            with tempfile.TemporaryDirectory(prefix="taydash-restore-") as tmp:
                head = Path(tmp) / "archive"
                _pg_restore(cfg, store, artifact, target, timeout, roles, with_roles, head, jobs)
                own = _database_itself(cfg, head, artifact, target, timeout)
            # What belongs to the database itself and the count of what came back, in one
            # psql (each client start is a round trip the restore waits for).
            applied = own.sql if own and own.done else ""
            counted = PgClient.of(cfg).psql(applied + _COUNT_TABLES, target, timeout=timeout)
            if counted.returncode != 0:
                raise environment(f"applying the database's owner, grants and settings to "
                                  f"{target} failed: {counted.err.strip()[-300:]}")
        except BaseException:
            drop(cfg, target)  # we created it a moment ago: no half-restored database stays
            raise
    except BaseException:
        drop_roles(cfg, created_roles)
        raise
    if own is not None:
        say(f"database {target}: {', '.join(own.done) or 'nothing of its own'} applied"
            + (f"; not applied: {'; '.join(own.skipped)}" if own.skipped else ""))
    numbers = counted.out.strip().split("\x1f")
    what = (f"{plural(int(numbers[0]), 'table')}, {plural(int(numbers[1]), 'view')}"
            if len(numbers) == 2 and all(n.isdigit() for n in numbers) else "? tables")
    return (f"restored {PgDump.of(artifact).database} ({artifact.size} bytes, {what}) "
            f"into {target}")


_COUNT_TABLES = ("SELECT count(*) FILTER (WHERE table_type = 'BASE TABLE'), "
                 "count(*) FILTER (WHERE table_type = 'VIEW') FROM information_schema.tables "
                 "WHERE table_schema NOT IN ('pg_catalog', 'information_schema');\n")


def _database_itself(cfg: PostgresConfig, head: Path, art: Artifact, target: str,
                     timeout: float) -> pg_database.Applied | None:
    """What belongs to the database itself (owner, grants, settings, comment), planned onto
    ``target`` where its roles exist; None for a dump that does not name its database."""
    source = PgDump.of(art).database
    if not source:
        return None
    client = PgClient.of(cfg)
    # The start of the plain archive, kept on the way through: its table of contents holds the
    # database's own statements, and pg_restore --schema-only reads no further.
    with head.open("rb") as fh:
        listed = client.run("pg_restore", "--create", "--schema-only", "--file=-", stdin=fh,
                            timeout=timeout, connect=False)
    if listed.returncode != 0:
        raise environment(f"pg_restore could not list the database's own settings: "
                          f"{listed.err.strip()[-300:]}")
    return pg_database.plan(pg_database.parse(listed.out, source), target,
                            set(existing_roles(cfg)))


def _pg_restore(cfg: PostgresConfig, store: Store, art: Artifact, target: str, timeout: float,
                roles: Artifact | None, with_roles: bool, head: Path, jobs: int = 1) -> None:
    """Stream the stored dump into pg_restore, hashing it on the way; refused when the hash
    does not match (the caller drops ``target``); a pg_restore failure says why when it can.
    The start of the plain archive is kept in ``head`` (the whole archive with ``jobs``)."""
    owners = [] if with_roles else ["--no-owner"]
    client = PgClient.of(cfg)
    failure: Exception | None = None
    with store.open(art.key) as raw, head.open("wb") as kept:
        hashing = HashingReader(raw)
        try:
            if jobs > 1:
                with _plain_stream(Progress(hashing, f"fetching {art.key}"), art, timeout) as fh:
                    while chunk := fh.read(CHUNK):
                        kept.write(chunk)
            else:
                with _plain_stream(Progress(hashing, f"restoring {art.key}"), art, timeout,
                                   kept) as fh:
                    # Through stdin so an `exec` prefix (docker compose exec -T) works the same.
                    restored = client.run("pg_restore", *owners, "--exit-on-error",
                                          f"--dbname={target}", stdin=fh, timeout=timeout)
        except Exception as exc:  # said after the hash: a corrupt object is the likelier cause
            failure = exc
        while hashing.read(CHUNK):  # every stored byte is hashed, whatever was read of it
            pass
    got = hashing.sha.hexdigest()
    if got != art.sha256 or hashing.size != art.size:
        raise refused(corrupt_message(art, got) + f"; the database {target} restored from it was "
                      "dropped")
    if failure is not None:
        raise failure
    if jobs > 1:
        restored = client.run("pg_restore", "-j", str(jobs), *owners, "--exit-on-error",
                              f"--dbname={target}", str(head), timeout=timeout)
    if restored.returncode == 0:
        return
    where = client.where
    dump = PgDump.of(art)
    why = versions.restore_problem(dump.dumped_with, dump.server_version,
                                   client.tool_version("pg_restore"), client.server_version(),
                                   where)
    if why is None and roles is not None and not with_roles:
        missing: list[str] = []
        with contextlib.suppress(TaydashError):
            missing = sorted(set(read_roles(store, roles, timeout).roles) - set(existing_roles(cfg)))
        if missing:
            why = (f"{restored.err.strip()[-300:]} (the roles {', '.join(missing[:5])} recorded "
                   f"with this backup do not exist on {where}: add --with-roles to create them "
                   "first)")
    raise environment(f"pg_restore into {target} failed: "
                      f"{why or restored.err.strip()[-300:]}")


@contextlib.contextmanager
def _plain_stream(source: Any, art: Artifact, timeout: float,
                  head: IO[bytes] | None = None) -> Iterator[IO[bytes]]:
    """The plain archive of ``source`` (the stored bytes, read as they arrive) as a pipe:
    decrypted and decompressed in pipes; its first bytes copied to ``head`` when given."""
    dump = PgDump.of(art)
    with contextlib.ExitStack() as stack:
        fh: Any = source
        if dump.encrypted_to:
            fh = stack.enter_context(decrypting_stream(fh, f"the dump {art.key}", timeout))
        if dump.compressed == "zstd":  # the decompressing thread keeps the head itself
            yield stack.enter_context(decompressed_pipe(fh, head))
            return
        yield stack.enter_context(pumped(fh, head))


@contextlib.contextmanager
def _plain(local: Path, art: Artifact, timeout: float) -> Iterator[IO[bytes]]:
    """The downloaded ``local`` copy as pg_restore reads it (see :func:`_plain_stream`)."""
    with local.open("rb") as src, _plain_stream(src, art, timeout) as fh:
        yield fh


def drop(cfg: PostgresConfig, database: str) -> None:
    """Drop a scratch database made by a drill."""
    PgClient.of(cfg).run("dropdb", "--if-exists", "--force", "--", database, timeout=120)


class Postgres:
    """The ``postgres`` kind: one ``pg_dump -Fc`` per configured database."""

    name = "postgres"
    drill_column: str | None = "db restore"

    def configured(self, cfg: Config) -> bool:
        return bool(cfg.snapshots and cfg.snapshots.postgres)

    def label(self, art: Artifact) -> str:
        dump = PgDump.of(art)
        return "postgres roles" if dump.roles else f"postgres {dump.database or ''}".strip()

    def database(self, art: Artifact) -> str:
        dump = PgDump.of(art)
        return "" if dump.roles else dump.database or ""

    def file_names(self, cfg: Config, run: str) -> list[str]:
        database = max(settings(cfg).databases, key=len, default="")
        return [f"{run}_{database}.dump.zst.gpg.sha256", f"{run}_roles.sql.gpg.sha256"]

    def tool_versions(self, cfg: Config) -> dict[str, str]:
        return {"pg_dump": PgClient.of(settings(cfg)).tool_version()}

    def take(self, job: TakeJob) -> Iterator[Artifact]:
        pcfg = settings(job.cfg)
        several = len(pcfg.databases) > 1
        encrypt_to = job.cfg.snapshots.encrypt_to if job.cfg.snapshots else ()
        # Asked before anything is stored: pg_dump refuses a newer server with a line that
        # names neither the fix nor, through an exec prefix, which pg_dump was run.
        client = PgClient.of(pcfg)
        server = client.server_version(pcfg.databases[0])
        problem = versions.dump_problem(client.tool_version(), server, client.where)
        if problem:
            raise environment(problem)
        plan = compression_plan(pcfg)
        # The key says what the bytes are: .dump (pg_restore reads it), .zst, .gpg.
        suffix = (".zst" if plan[1] else "") + (".gpg" if encrypt_to else "")
        todo = [(db, dump_key(job.tag, job.ts, db, several) + suffix) for db in pcfg.databases]
        if len(todo) == 1:
            yield dump(pcfg, todo[0][0], job.store, todo[0][1], job.timeout, encrypt_to, plan,
                       server)
        else:
            yield from self._dump_side_by_side(pcfg, job, todo, encrypt_to, plan, server)
        if pcfg.roles:  # last: a failed dump leaves nothing of it to remove
            yield dump_roles(pcfg, job.store, f"db-backups/{job.tag}_{job.ts}_roles.sql"
                             + (".gpg" if encrypt_to else ""), job.timeout, encrypt_to, server)

    def _dump_side_by_side(self, pcfg: PostgresConfig, job: TakeJob, todo: list[tuple[str, str]],
                           encrypt_to: tuple[str, ...], plan: tuple[list[str], str],
                           server: str) -> Iterator[Artifact]:
        """Several databases, two dumps at a time (two cores: more would only queue).

        When one fails, the dumps not started are cancelled, the running ones finish, and
        whatever they stored is removed here (it was never handed over to be rolled back).
        """
        from concurrent.futures import ThreadPoolExecutor, as_completed, wait

        pool = ThreadPoolExecutor(max_workers=DUMPS_AT_ONCE, thread_name_prefix="taydash-pg")
        futures = [pool.submit(dump, pcfg, db, job.store, key, job.timeout, encrypt_to, plan,
                               server) for db, key in todo]
        handed = set()
        try:
            for future in as_completed(futures):
                art = future.result()
                handed.add(future)
                yield art
        except BaseException:
            for future in futures:
                future.cancel()
            wait(futures, timeout=job.timeout)
            for future in futures:
                if future in handed or not future.done() or future.cancelled():
                    continue
                if future.exception() is None:
                    with contextlib.suppress(Exception):
                        self.remove(job.store, future.result())
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def verify(self, cfg: Config, store: Store, art: Artifact, deep: bool) -> Checked:
        if deep and not PgDump.of(art).roles:
            return self._read_fully(cfg, store, art)
        checked = check_object(store, art)
        if deep and checked.ok:
            try:
                read_roles(store, art, snapshot_timeout())  # psql would run it: strictly read
            except NoSecretKey as exc:
                checked.not_possible.append(exc.message)
            except TaydashError as exc:
                checked.problems.append(exc.message)
        return checked

    def _read_fully(self, cfg: Config, store: Store, art: Artifact) -> Checked:
        """One pass over the stored dump: every byte hashed, and every data block read by
        pg_restore to /dev/null (decrypted and decompressed in the stream), which catches a
        dump that hashes right but is broken. Without the secret key the bytes are still all
        hashed, and the read is reported as not possible here."""
        checked = Checked()
        unreadable = ""
        with store.open(art.key) as raw:
            hashing = HashingReader(raw)
            try:
                with _plain_stream(hashing, art, snapshot_timeout()) as fh:
                    res = PgClient.of(settings(cfg)).run(
                        "pg_restore", "--file=/dev/null", stdin=fh, timeout=snapshot_timeout(),
                        connect=False)
                if res.returncode != 0:
                    unreadable = f"pg_restore cannot read the dump: {res.err.strip()[-200:]}"
            except NoSecretKey as exc:
                checked.not_possible.append(exc.message)
            except TaydashError as exc:  # said after the hash: a corrupt object is likelier
                unreadable = exc.message
            while hashing.read(CHUNK):  # every stored byte is hashed, whatever was read of it
                pass
        judge_hash(store, art, hashing.sha.hexdigest(), hashing.size, checked)
        if unreadable and checked.ok:
            checked.problems.append(unreadable)
        return checked

    def restore(self, job: RestoreJob) -> str:
        """``restore db``: one database of the backup (``job.database`` among several) into a
        new database ``job.target`` on the configured server or ``job.server``; with
        ``job.with_roles`` the recorded roles the server lacks are created first."""
        cfg = on_server(job.cfg, *job.server) if any(job.server) else job.cfg
        arts = [(a, PgDump.of(a)) for a in job.artifacts(self.name)]
        dumps = [(a, d) for a, d in arts if not d.roles]
        if job.database is not None:
            dumps = [(a, d) for a, d in dumps if d.database == job.database]
        if not dumps:
            what = f"database {job.database}" if job.database else self.name
            raise refused(f"the backup of {job.manifest.tag} has no {what} artifact.")
        if len(dumps) > 1:
            names = ", ".join(str(d.database) for _, d in dumps)
            raise usage(f"the backup of {job.manifest.tag} holds several databases ({names}); "
                        "choose one with --database.")
        roles = next((a for a, d in arts if d.roles), None)
        if job.with_roles and roles is not None and not job.signed \
                and not job.trust_unsigned_roles:
            # The roles script is the one artifact psql runs: only from a manifest whose
            # signature ties it to a key the tag policy allows, whatever signed_manifests says.
            raise refused(f"--with-roles applies roles only from a manifest signed by an allowed "
                          f"key, and the manifest of {job.manifest.tag} is not; restore without "
                          "--with-roles, or add --trust-unsigned-roles if you trust the store.")
        return restore(settings(cfg), job.store, dumps[0][0], job.target, job.timeout, roles,
                       job.with_roles, job.allow_privileged_roles, job.jobs)

    def preflight(self, cfg: Config) -> list[Check]:
        pcfg = settings(cfg)
        found = [tool_check(tool, "postgresql-client", prefix=pcfg.exec)
                 for tool in ("pg_dump", "pg_restore", "pg_dumpall")]
        client = PgClient.of(pcfg)
        try:
            res = client.psql("SELECT 1;\n", pcfg.databases[0] if pcfg.databases else "postgres",
                              timeout=15)
            ok, detail = res.returncode == 0, " / ".join(res.err.strip().splitlines()[:2])
        except (process.Timeout, TaydashError) as exc:
            ok, detail = False, str(exc)
        found.append(Check("PostgreSQL", ok, f"{client.where} as {pcfg.user}" if ok else detail,
                           f"check [snapshots.postgres] host, port and user (pg_isready -h "
                           f"{pcfg.host} -p {pcfg.port}); passwords come from ~/.pgpass or "
                           "PGPASSWORD"))
        return found

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path,
              commit: str = "") -> str:
        pcfg = settings(cfg)
        if PgDump.of(art).roles:  # a drill never changes the server's roles: it reads the script
            script = read_roles(store, art, snapshot_timeout())
            return f"roles script readable ({plural(len(script.roles), 'role')})"
        name = f"taydash_drill_{secrets.token_hex(6)}"
        try:
            return restore(pcfg, store, art, name, snapshot_timeout())
        finally:
            drop(pcfg, name)  # scratch only: dropped whatever happened

    def clean_leftovers(self, cfg: Config, notes: list[str]) -> int:
        return 0  # nothing outside the store to undo

    def remove(self, store: Store, art: Artifact) -> None:
        # Every version: the key carries this run's id, so each of its versions is this
        # backup's, the one `objects promote` wrote included.
        store.delete(art.key)
        if art.sha256_key:
            store.delete(art.sha256_key)
