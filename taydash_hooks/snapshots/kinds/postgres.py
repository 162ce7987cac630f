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
from pathlib import Path
from typing import IO, Any

from taydash_hooks import process
from taydash_hooks.config import Config, PostgresConfig
from taydash_hooks.errors import TaydashError, environment, refused, usage
from taydash_hooks.output import Progress, plural, say
from taydash_hooks.snapshots.compress import ZstdStream, decompressed_pipe
from taydash_hooks.snapshots.crypt import decrypting, encrypting_stream
from taydash_hooks.snapshots.kinds import pg_roles
from taydash_hooks.snapshots.kinds import pg_versions as versions
from taydash_hooks.snapshots.kinds.base import Checked, TakeJob, snapshot_timeout
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.snapshots.stored import check_object, download_verified
from taydash_hooks.store import Store, Written

DUMPS_AT_ONCE = 2

# A database name we create: never something libpq would read as a conninfo
# string or URI (`dbname=prod`, `postgresql://...`).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


def _conn(cfg: PostgresConfig) -> list[str]:
    # --no-password: a hook has no terminal; a missing password fails instead of hanging.
    return ["-h", cfg.host, "-p", str(cfg.port), "-U", cfg.user, "--no-password"]


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


def tool_version(cfg: PostgresConfig, tool: str = "pg_dump") -> str:
    """``pg_dump --version`` (through the exec prefix), asked once per process."""
    return _version(tuple(cfg.exec), tool)


@functools.lru_cache(maxsize=8)
def _version(prefix: tuple[str, ...], tool: str) -> str:
    try:
        return process.run([*prefix, tool, "--version"], timeout=30).out.strip()
    except (process.Timeout, Exception):
        return "unknown"


def dump_key(tag: str, ts: str, database: str, several: bool) -> str:
    return f"db-backups/{tag}_{ts}_{database}.dump" if several else f"db-backups/{tag}_{ts}.dump"


def native_zstd(cfg: PostgresConfig, database: str) -> bool:
    """Whether this pg_dump compresses with zstd itself (PostgreSQL 16+ built with zstd):
    then pg_restore reads the dump directly.

    Asked, not guessed: a version number says nothing of how it was built, so a schema-only
    dump of no table with ``--compress=zstd`` must succeed (its exit code decides).
    """
    client = versions.major(tool_version(cfg))
    if client is None or client < 16:
        return False
    return _probe_zstd(tuple(cfg.exec), tuple(_conn(cfg)), database)


@functools.lru_cache(maxsize=8)
def _probe_zstd(prefix: tuple[str, ...], conn: tuple[str, ...], database: str) -> bool:
    try:
        res = process.run([*prefix, "pg_dump", "-Fc", "--compress=zstd", "--schema-only",
                           "--table=taydash_zstd_probe_no_such_table", *conn,
                           f"--dbname={database}"], timeout=60)
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
    # Through stdin: psql interpolates :'name' (quoted) in a script, not in -c.
    res = process.run([*cfg.exec, "psql", *_conn(cfg), "-X", "-tA", "--dbname=postgres",
                       "-v", f"name={name}"],
                      input=b"SELECT count(*) FROM pg_database WHERE datname = :'name';\n",
                      timeout=60)
    if res.returncode != 0:
        raise environment(f"cannot ask PostgreSQL at {cfg.host}:{cfg.port} which databases exist: "
                          f"{res.err.strip()[-500:]}")
    return res.out.strip() != "0"


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
    with tempfile.NamedTemporaryFile(prefix="taydash-pgdump-", suffix=".err") as err, \
            process.popen([*cfg.exec, tool, *args], stdout=subprocess.PIPE, stderr=err) as proc, \
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
    written = _stream(cfg, "pg_dump", ["-Fc", *flags, *_conn(cfg), f"--dbname={database}"],
                      f"dump of database {database}", f"postgres {database}", store, key,
                      timeout, encrypt_to, compressed)
    say(f"  postgres {database}: {written.size} bytes -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", database=database, encrypted_to=encrypt_to,
                    compressed=compressed, server_version=server,
                    dumped_with=versions.number(tool_version(cfg)))


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
    written = _stream(cfg, "pg_dumpall", ["--globals-only", "--no-role-passwords", *_conn(cfg)],
                      "pg_dumpall --globals-only", "postgres roles", store, key, timeout,
                      encrypt_to, "")
    say(f"  postgres roles: {written.size} bytes -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", encrypted_to=encrypt_to, roles=True,
                    server_version=server, dumped_with=versions.number(tool_version(cfg, "pg_dumpall")))


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


def existing_roles(cfg: PostgresConfig) -> set[str]:
    """The role names on the server ``cfg`` points at."""
    res = process.run([*cfg.exec, "psql", *_conn(cfg), "-X", "-tA", "--dbname=postgres", "-c",
                       "SELECT rolname FROM pg_roles"], timeout=60)
    if res.returncode != 0:
        raise environment(f"cannot list the roles of PostgreSQL at {cfg.host}:{cfg.port}: "
                          f"{res.err.strip()[-300:]}")
    return set(res.out.splitlines())


def apply_roles(cfg: PostgresConfig, store: Store, art: Artifact, timeout: float) -> list[str]:
    """Create the recorded roles the server lacks (in one transaction); the ones it has are
    left exactly as they are. Returns the roles created."""
    script = read_roles(store, art, timeout)
    sql, created, skipped = pg_roles.plan(script, existing_roles(cfg))
    if created:
        res = process.run([*cfg.exec, "psql", *_conn(cfg), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "--dbname=postgres"], input=sql.encode(), timeout=timeout)
        if res.returncode != 0:
            raise environment(f"creating the recorded roles on {cfg.host}:{cfg.port} failed, so "
                              f"none was created: {res.err.strip()[-300:]}")
    left = f"; {plural(script.left_out, 'tablespace or parameter grant')} left out" \
        if script.left_out else ""
    say(f"roles: created {', '.join(created) or 'none'}; "
        f"{plural(len(skipped), 'role')} already there, left as they are{left}")
    return created


def drop_roles(cfg: PostgresConfig, roles: list[str]) -> None:
    """Drop roles this run created (a restore that failed after creating them)."""
    if not roles:
        return
    sql = "".join(f"DROP ROLE IF EXISTS {_quote_ident(r)};\n" for r in roles)
    process.run([*cfg.exec, "psql", *_conn(cfg), "-X", "-q", "--dbname=postgres"],
                input=sql.encode(), timeout=120)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def restore(cfg: PostgresConfig, store: Store, artifact: Artifact, target: str, timeout: float,
            roles: Artifact | None = None, with_roles: bool = False) -> str:
    """Verify, create ``target`` (refusing an existing one) and pg_restore into it.

    ``with_roles`` first creates the roles recorded in ``roles`` that the server lacks and then
    keeps the dump's owners; without it, objects belong to the restoring user. Whatever fails,
    the database and the roles this call created are removed again.
    """
    check_target_name(target)
    if artifact.roles:
        raise usage(f"{artifact.key} is the roles script, not a database dump.")
    if database_exists(cfg, target):
        raise refused(f"database {target} already exists; restore refuses to touch it "
                      "(choose another --target-db).")
    if with_roles and roles is None:
        raise refused("this backup has no roles script (taken with roles = false, or before "
                      "taydash recorded roles); restore without --with-roles.")
    with tempfile.TemporaryDirectory(prefix="taydash-restore-") as tmp:
        local = Path(tmp) / "restore.dump"
        download_verified(store, artifact, local)
        created_roles = apply_roles(cfg, store, roles, timeout) if with_roles and roles else []
        try:
            created = process.run([*cfg.exec, "createdb", *_conn(cfg), "--", target], timeout=120)
            if created.returncode != 0:
                raise environment(f"createdb {target} failed: {created.err.strip()[-500:]}")
            try:
                _pg_restore(cfg, store, local, artifact, target, timeout, roles, with_roles)
            except BaseException:
                drop(cfg, target)  # we created it a moment ago: no half-restored database stays
                raise
        except BaseException:
            drop_roles(cfg, created_roles)
            raise
    counted = process.run(
        [*cfg.exec, "psql", *_conn(cfg), "-X", "-tA", "-F", " ", f"--dbname={target}", "-c",
         "SELECT count(*) FILTER (WHERE table_type = 'BASE TABLE'), "
         "count(*) FILTER (WHERE table_type = 'VIEW') FROM information_schema.tables "
         "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"], timeout=60)
    numbers = counted.out.split()
    what = (f"{plural(int(numbers[0]), 'table')}, {plural(int(numbers[1]), 'view')}"
            if len(numbers) == 2 and all(n.isdigit() for n in numbers) else "? tables")
    return f"restored {artifact.database} ({artifact.size} bytes, {what}) into {target}"


def _pg_restore(cfg: PostgresConfig, store: Store, local: Path, art: Artifact, target: str,
                timeout: float, roles: Artifact | None, with_roles: bool) -> None:
    """pg_restore the downloaded dump into ``target``; a failure says why when it can."""
    owners = [] if with_roles else ["--no-owner"]
    with _plain(local, art, timeout) as fh:
        # Through stdin so an `exec` prefix (docker compose exec -T) works the same.
        restored = process.run([*cfg.exec, "pg_restore", *_conn(cfg), *owners, "--exit-on-error",
                                f"--dbname={target}"], stdin=fh, timeout=timeout)
    if restored.returncode == 0:
        return
    where = f"{cfg.host}:{cfg.port}"
    why = versions.restore_problem(art.dumped_with, art.server_version,
                                   tool_version(cfg, "pg_restore"),
                                   versions.server_version(cfg, _conn(cfg), "postgres"), where)
    if why is None and roles is not None and not with_roles:
        missing: list[str] = []
        with contextlib.suppress(TaydashError):
            missing = sorted(set(read_roles(store, roles, timeout).roles) - existing_roles(cfg))
        if missing:
            why = (f"{restored.err.strip()[-300:]} (the roles {', '.join(missing[:5])} recorded "
                   f"with this backup do not exist on {where}: add --with-roles to create them "
                   "first)")
    raise environment(f"pg_restore into {target} failed: "
                      f"{why or restored.err.strip()[-300:]}")


@contextlib.contextmanager
def _plain(local: Path, art: Artifact, timeout: float) -> Iterator[IO[bytes]]:
    """The dump as pg_restore reads it: decrypted and decompressed in pipes, as stored."""
    with contextlib.ExitStack() as stack:
        fh: IO[bytes] = stack.enter_context(
            decrypting(local, f"the dump {art.key}", timeout) if art.encrypted_to
            else local.open("rb"))
        if art.compressed == "zstd":
            fh = stack.enter_context(decompressed_pipe(fh))
        yield fh


def drop(cfg: PostgresConfig, database: str) -> None:
    """Drop a scratch database made by a drill."""
    process.run([*cfg.exec, "dropdb", *_conn(cfg), "--if-exists", "--force", "--", database],
                timeout=120)


class Postgres:
    """The ``postgres`` kind: one ``pg_dump -Fc`` per configured database."""

    name = "postgres"
    drill_column: str | None = "db restore"

    def configured(self, cfg: Config) -> bool:
        return bool(cfg.snapshots and cfg.snapshots.postgres)

    def tool_versions(self, cfg: Config) -> dict[str, str]:
        return {"pg_dump": tool_version(settings(cfg))}

    def take(self, job: TakeJob) -> Iterator[Artifact]:
        pcfg = settings(job.cfg)
        several = len(pcfg.databases) > 1
        encrypt_to = job.cfg.snapshots.encrypt_to if job.cfg.snapshots else ()
        # Asked before anything is stored: pg_dump refuses a newer server with a line that
        # names neither the fix nor, through an exec prefix, which pg_dump was run.
        server = versions.server_version(pcfg, _conn(pcfg), pcfg.databases[0])
        problem = versions.dump_problem(tool_version(pcfg), server, f"{pcfg.host}:{pcfg.port}")
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
        checked = check_object(store, art)
        if deep and checked.ok and art.roles:
            try:
                read_roles(store, art, snapshot_timeout())  # psql would run it: strictly read
            except TaydashError as exc:
                checked.problems.append(exc.message)
        elif deep and checked.ok:
            with tempfile.TemporaryDirectory(prefix="taydash-verify-") as tmp:
                local = Path(tmp) / "dump"
                download_verified(store, art, local)
                # Reading every data block to /dev/null catches a dump that hashes right but is
                # broken (decrypted in the stream when it is stored encrypted).
                with _plain(local, art, snapshot_timeout()) as fh:
                    res = process.run([*settings(cfg).exec, "pg_restore", "--file=/dev/null"],
                                      stdin=fh, timeout=snapshot_timeout())
                if res.returncode != 0:
                    checked.problems.append(f"pg_restore cannot read the dump: {res.err.strip()[-200:]}")
        return checked

    def restore(self, cfg: Config, store: Store, art: Artifact, target: str) -> str:
        return restore(settings(cfg), store, art, target, snapshot_timeout())

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path) -> str:
        pcfg = settings(cfg)
        if art.roles:  # a drill never changes the server's roles: it reads the script
            script = read_roles(store, art, snapshot_timeout())
            return f"roles script readable ({plural(len(script.roles), 'role')})"
        name = f"taydash_drill_{secrets.token_hex(6)}"
        try:
            return self.restore(cfg, store, art, name)
        finally:
            drop(pcfg, name)  # scratch only: dropped whatever happened

    def remove(self, store: Store, art: Artifact) -> None:
        store.delete(art.key, art.version_id)  # the version this run wrote, nobody else's
        if art.sha256_key:
            store.delete(art.sha256_key)
