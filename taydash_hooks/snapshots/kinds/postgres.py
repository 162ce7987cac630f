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
from taydash_hooks.errors import environment, refused, usage
from taydash_hooks.output import Progress, plural, say
from taydash_hooks.snapshots.compress import ZstdStream, decompressed_pipe
from taydash_hooks.snapshots.crypt import decrypting, encrypting_stream
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
    m = re.search(r"\b([0-9]+)(?:\.[0-9]+)+", tool_version(cfg))
    if not m or int(m.group(1)) < 16:
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


def dump(cfg: PostgresConfig, database: str, store: Store, key: str, timeout: float,
         encrypt_to: tuple[str, ...] = (), plan: tuple[list[str], str] = ([], "")) -> Artifact:
    """Stream one database into ``key`` (zstd-compressed in the stream and/or through gpg as
    ``plan`` and ``encrypt_to`` say) and write its ``.sha256`` sidecar: the SHA-256 of the
    stored bytes, so verify needs no secret key."""
    flags, compressed = plan
    argv = [*cfg.exec, "pg_dump", "-Fc", *flags, *_conn(cfg), f"--dbname={database}"]
    with tempfile.NamedTemporaryFile(prefix="taydash-pgdump-", suffix=".err") as err, \
            process.popen(argv, stdout=subprocess.PIPE, stderr=err) as proc, \
            contextlib.ExitStack() as stack:
        stream = process.ProducerStream(proc, "pg_dump", timeout, err.name)
        stack.callback(stream.close)
        source: Any = stream
        if compressed:
            zstd = ZstdStream(stream)
            stack.callback(zstd.close)
            source = zstd
        if encrypt_to:
            source = stack.enter_context(encrypting_stream(source, encrypt_to, timeout))
        try:
            written: Written = store.put_stream(
                key, Progress(source, f"postgres {database}"))  # type: ignore[arg-type]
        except process.ProducerFailed as exc:
            raise environment(f"dump of database {database} failed: {exc}.") from None
        except BaseException as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, process.ProducerFailed):
                raise environment(f"dump of database {database} failed: {cause}.") from None
            raise
    name = key.rsplit("/", 1)[-1]
    store.put_bytes(f"{key}.sha256", f"{written.sha256}  {name}\n".encode())
    say(f"  postgres {database}: {written.size} bytes -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", database=database, encrypted_to=encrypt_to,
                    compressed=compressed)


def restore(cfg: PostgresConfig, store: Store, artifact: Artifact, target: str,
            timeout: float) -> str:
    """Verify, create ``target`` (refusing an existing one) and pg_restore into it."""
    check_target_name(target)
    if database_exists(cfg, target):
        raise refused(f"database {target} already exists; restore refuses to touch it "
                      "(choose another --target-db).")
    with tempfile.TemporaryDirectory(prefix="taydash-restore-") as tmp:
        local = Path(tmp) / "restore.dump"
        download_verified(store, artifact, local)
        created = process.run([*cfg.exec, "createdb", *_conn(cfg), "--", target], timeout=120)
        if created.returncode != 0:
            raise environment(f"createdb {target} failed: {created.err.strip()[-500:]}")
        try:
            with _plain(local, artifact, timeout) as fh:
                # Through stdin so an `exec` prefix (docker compose exec -T) works the same.
                restored = process.run(
                    [*cfg.exec, "pg_restore", *_conn(cfg), "--no-owner", "--exit-on-error",
                     f"--dbname={target}"], stdin=fh, timeout=timeout)
            if restored.returncode != 0:
                raise environment(f"pg_restore into {target} failed: "
                                  f"{restored.err.strip()[-300:]}")
        except BaseException:
            drop(cfg, target)  # we created it a moment ago: no half-restored database stays
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
        plan = compression_plan(pcfg)
        # The key says what the bytes are: .dump (pg_restore reads it), .zst, .gpg.
        suffix = (".zst" if plan[1] else "") + (".gpg" if encrypt_to else "")
        todo = [(db, dump_key(job.tag, job.ts, db, several) + suffix) for db in pcfg.databases]
        if len(todo) == 1:
            yield dump(pcfg, todo[0][0], job.store, todo[0][1], job.timeout, encrypt_to, plan)
            return
        yield from self._dump_side_by_side(pcfg, job, todo, encrypt_to, plan)

    def _dump_side_by_side(self, pcfg: PostgresConfig, job: TakeJob, todo: list[tuple[str, str]],
                           encrypt_to: tuple[str, ...],
                           plan: tuple[list[str], str]) -> Iterator[Artifact]:
        """Several databases, two dumps at a time (two cores: more would only queue).

        When one fails, the dumps not started are cancelled, the running ones finish, and
        whatever they stored is removed here (it was never handed over to be rolled back).
        """
        from concurrent.futures import ThreadPoolExecutor, as_completed, wait

        pool = ThreadPoolExecutor(max_workers=DUMPS_AT_ONCE, thread_name_prefix="taydash-pg")
        futures = [pool.submit(dump, pcfg, db, job.store, key, job.timeout, encrypt_to, plan)
                   for db, key in todo]
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
        if deep and checked.ok:
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
        name = f"taydash_drill_{secrets.token_hex(6)}"
        try:
            return self.restore(cfg, store, art, name)
        finally:
            drop(pcfg, name)  # scratch only: dropped whatever happened

    def remove(self, store: Store, art: Artifact) -> None:
        store.delete(art.key, art.version_id)  # the version this run wrote, nobody else's
        if art.sha256_key:
            store.delete(art.sha256_key)
