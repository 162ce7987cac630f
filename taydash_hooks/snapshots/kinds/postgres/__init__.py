"""PostgreSQL: stream ``pg_dump -Fc`` through SHA-256 into the store; verify, restore, drill.

No temp file on the way out: memory is bounded by the store's part size.
Passwords come from libpq (.pgpass, PGPASSFILE, PGPASSWORD), never argv. What a stored dump
is lives in :mod:`.archive`, what a restore does on the server in :mod:`.server`, the
restore itself in :mod:`.restore`.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from taydash_hooks import process
from taydash_hooks.config import Config, PostgresConfig
from taydash_hooks.errors import TaydashError, environment, refused, usage
from taydash_hooks.output import Progress, plural, say
from taydash_hooks.results import Check
from taydash_hooks.snapshots.compress import ZstdStream
from taydash_hooks.snapshots.crypt import NoSecretKey, encrypting_stream
from taydash_hooks.snapshots.kinds.base import (
    Checked,
    RestoreJob,
    RestoreOptions,
    StackJob,
    TakeJob,
    snapshot_timeout,
)
from taydash_hooks.snapshots.kinds.place import tool_check
from taydash_hooks.snapshots.kinds.postgres import versions
from taydash_hooks.snapshots.kinds.postgres.archive import PgDump, plain_pipe
from taydash_hooks.snapshots.kinds.postgres.blocks import Reblocked
from taydash_hooks.snapshots.kinds.postgres.client import PgClient
from taydash_hooks.snapshots.kinds.postgres.server import drop, on_server, read_roles, settings
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.snapshots.stored import check_object, judge_hash
from taydash_hooks.store import Store, Written
from taydash_hooks.store.base import CHUNK, HashingReader

DUMPS_AT_ONCE = 2
READY_TIMEOUT = 180.0  # seconds for a fresh PostgreSQL container to answer (initdb first)


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


def _stream(cfg: PostgresConfig, tool: str, args: list[str], what: str, label: str, store: Store,
            key: str, timeout: float, encrypt_to: tuple[str, ...], compressed: str) -> Written:
    """Stream the stdout of ``tool`` (pg_dump or pg_dumpall, through the exec prefix) into
    ``key`` (through zstd and/or gpg as asked) and write its ``.sha256`` sidecar: the SHA-256 of
    the stored bytes, so verify needs no secret key. A producer that exits non-zero is ``what``
    failing (exit 3), and nothing stays under ``key``."""
    client = PgClient.of(cfg)
    with tempfile.NamedTemporaryFile(prefix="taydash-pgdump-", suffix=".err") as err, \
            process.popen(client.argv(tool, *args), stdout=subprocess.PIPE, stderr=err,
                          inside_prefix=len(client.prefix())) as proc, \
            contextlib.ExitStack() as stack:
        stream = process.ProducerStream(proc, tool, timeout, err.name)
        stack.callback(stream.close)
        source: Any = Reblocked(stream) if "-Z0" in args else stream
        if compressed:
            zstd = ZstdStream(source)
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
    if cfg.dedup and not encrypt_to:
        return _dump_chunked(cfg, database, store, key, timeout, server)
    written = _stream(cfg, "pg_dump", ["-Fc", *flags, f"--dbname={database}"],
                      f"dump of database {database}", f"postgres {database}", store, key,
                      timeout, encrypt_to, compressed)
    say(f"  postgres {database}: {written.size} bytes -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", fields=PgDump(
                        database=database, encrypted_to=encrypt_to, compressed=compressed,
                        server_version=server,
                        dumped_with=PgClient.of(cfg).tool_number()).to_json())


def restore_into(cfg: PostgresConfig, store: Store, art: Artifact, target: str, timeout: float,
                 **options: Any) -> str:
    """:func:`.restore.restore`, imported when a restore runs: a snapshot needs none of it
    (nor the roles and database modules it reads dumps with)."""
    from taydash_hooks.snapshots.kinds.postgres.restore import restore

    return restore(cfg, store, art, target, timeout, **options)


def chunk_list_key(key: str) -> str:
    """The key of a chunked dump's list: the dump's key with ``.chunks`` for what it holds."""
    for suffix in (".dump.zst", ".dump"):
        if key.endswith(suffix):
            return key[: -len(suffix)] + ".chunks"
    return key + ".chunks"


def _dump_chunked(cfg: PostgresConfig, database: str, store: Store, key: str, timeout: float,
                  server: str) -> Artifact:
    """One database as content-defined chunks (snapshots/chunks.py): ``pg_dump -Fc -Z0``
    (uncompressed, so an unchanged part of a table is the same bytes again), each chunk
    compressed and stored once; the list under the artifact's key with its sidecar."""
    from taydash_hooks.snapshots import chunks

    client = PgClient.of(cfg)
    key = chunk_list_key(key)
    label = f"postgres {database}"
    with tempfile.NamedTemporaryFile(prefix="taydash-pgdump-", suffix=".err") as err, \
            process.popen(client.argv("pg_dump", "-Fc", "-Z0", f"--dbname={database}"),
                          stdout=subprocess.PIPE, stderr=err,
                          inside_prefix=len(client.prefix())) as proc:
        stream = process.ProducerStream(proc, "pg_dump", timeout, err.name)
        try:
            stored = chunks.store_stream(Progress(Reblocked(stream), label), store)
        except process.ProducerFailed as exc:
            raise environment(f"dump of database {database} failed: {exc}.") from None
        finally:
            stream.close()
    written = store.put_bytes(key, stored.listing)
    _sidecar(store, key, written)
    say(f"  postgres {database}: {stored.plain_size} bytes in {stored.chunks} chunks, "
        f"{stored.new_chunks} new ({stored.new_bytes} bytes stored) -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", fields=PgDump(
                        database=database, server_version=server,
                        dumped_with=PgClient.of(cfg).tool_number(), chunked=True,
                        plain_sha256=stored.plain_sha256,
                        plain_size=stored.plain_size).to_json())


def _check_chunks(store: Store, art: Artifact, checked: Checked) -> None:
    """Every chunk a chunked dump needs, read and re-hashed (its list was checked already)."""
    from taydash_hooks.snapshots import chunks

    with store.open(art.key) as fh:
        listed = chunks.parse(fh.read(chunks.MAX_LIST + 1), art.key)
    for chunk in {c.key: c for c in listed}.values():
        try:
            data = chunks.read_chunk(store, chunk, art.key)
        except TaydashError as exc:
            checked.problems.append(exc.message)
            continue
        checked.files += 1
        checked.bytes += len(data)


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
    return _roles_artifact(cfg, key, written, encrypt_to, server)


@contextlib.contextmanager
def roles_beside(cfg: PostgresConfig, timeout: float) -> Iterator[Callable[[Store, str, str], Artifact]]:
    """``pg_dumpall --globals-only --no-role-passwords`` started now, beside the databases'
    dumps, into an unlinked file of its own; the function given stores it (with its sidecar)
    once they are done. Stored after them, a failed dump leaves nothing of it to remove (the
    store may be gone by then); leaving the block any other way stops it, and the file goes
    with the block. Plain output only: an encrypted backup's roles never touch the disk."""
    client = PgClient.of(cfg)
    started = time.monotonic()
    with tempfile.TemporaryFile(prefix="taydash-roles-") as out, \
            tempfile.NamedTemporaryFile(prefix="taydash-pgdump-", suffix=".err") as err, \
            process.popen(client.argv("pg_dumpall", "--globals-only", "--no-role-passwords"),
                          stdout=out, stderr=err, inside_prefix=len(client.prefix())) as proc:

        def store_roles(store: Store, key: str, server: str) -> Artifact:
            timed_out = False
            try:
                rc = proc.wait(max(1.0, timeout - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                process.kill_group(proc, grace=1.0)
                rc, timed_out = proc.wait(), True
            if rc != 0 or timed_out:
                why = process.failure("pg_dumpall", rc, timed_out, err.name)
                raise environment(f"pg_dumpall --globals-only failed: {why}.")
            out.seek(0)
            written = store.put_stream(key, Progress(out, "postgres roles"))  # type: ignore[arg-type]
            _sidecar(store, key, written)
            return _roles_artifact(cfg, key, written, (), server)

        yield store_roles


def _roles_artifact(cfg: PostgresConfig, key: str, written: Written, encrypt_to: tuple[str, ...],
                    server: str) -> Artifact:
    say(f"  postgres roles: {written.size} bytes -> {key}")
    return Artifact("postgres", key, written.size, written.sha256, written.version_id,
                    sha256_key=f"{key}.sha256", fields=PgDump(
                        encrypted_to=encrypt_to, roles=True, server_version=server,
                        dumped_with=PgClient.of(cfg).tool_number("pg_dumpall")).to_json())


@dataclass(frozen=True, kw_only=True)
class PgRestoreOptions(RestoreOptions):
    """``restore db``'s own options, each by name (four flags in a row must not be swappable)."""

    database: str | None = None  # which database of several
    server: tuple[str | None, int | None, str | None] = (None, None, None)  # host, port, user
    with_roles: bool = False  # create the recorded roles the server lacks first
    allow_privileged_roles: bool = False  # SUPERUSER & co. from the roles script
    trust_unsigned_roles: bool = False  # roles from a manifest no allowed key signed
    jobs: int = 1  # pg_restore --jobs
    into_empty: bool = False  # replace an existing database that holds nothing of its own

class Postgres:
    """The ``postgres`` kind: one ``pg_dump -Fc`` per configured database."""

    name = "postgres"
    drill_column: str | None = "db restore"

    def configured(self, cfg: Config) -> bool:
        return bool(cfg.snapshots and cfg.snapshots.postgres)

    def ready(self, cfg: Config, store: Store) -> None:
        return None  # every store holds it; a missing tool or server is met at once

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
        # names neither the fix nor, through an exec prefix, which pg_dump was run. The
        # tools' versions are asked while the server answers (each is a process start).
        client = PgClient.of(pcfg)
        server = client.ask_versions(pcfg.databases[0],
                                     ("pg_dump", "pg_dumpall") if pcfg.roles else ("pg_dump",))
        problem = versions.dump_problem(client.tool_version(), server, client.where)
        if problem:
            raise environment(problem)
        plan = compression_plan(pcfg)
        # The key says what the bytes are: .dump (pg_restore reads it), .zst, .gpg.
        suffix = (".zst" if plan[1] else "") + (".gpg" if encrypt_to else "")
        jobs = [functools.partial(dump, pcfg, db, job.store,
                                  dump_key(job.tag, job.ts, db, several) + suffix, job.timeout,
                                  encrypt_to, plan, server) for db in pcfg.databases]
        roles_key = f"db-backups/{job.tag}_{job.ts}_roles.sql" + (".gpg" if encrypt_to else "")
        with contextlib.ExitStack() as stack:
            # The roles' script is small and its pg_dumpall a whole connection's start: run
            # beside the dumps, it costs a snapshot no time of its own (stored after them).
            beside = stack.enter_context(roles_beside(pcfg, job.timeout)) \
                if pcfg.roles and not encrypt_to else None
            if len(jobs) == 1:
                yield jobs[0]()
            else:
                yield from self._side_by_side(job, jobs)
            if beside is not None:
                yield beside(job.store, roles_key, server)
            elif pcfg.roles:  # last: a failed dump leaves nothing of it to remove
                yield dump_roles(pcfg, job.store, roles_key, job.timeout, encrypt_to, server)

    def _side_by_side(self, job: TakeJob,
                      jobs: Sequence[Callable[[], Artifact]]) -> Iterator[Artifact]:
        """The databases' dumps, two at a time (two cores: more would only queue); handed over
        in the order given, so a manifest lists them the same way each time.

        When one fails, the dumps not started are cancelled, the running ones finish (stopped
        at once when the run is interrupted), and whatever they stored is removed here (it
        was never handed over to be rolled back).
        """
        from concurrent.futures import ThreadPoolExecutor, wait

        pool = ThreadPoolExecutor(max_workers=DUMPS_AT_ONCE, thread_name_prefix="taydash-pg")
        futures = [pool.submit(one) for one in jobs]
        handed = set()
        try:
            for future in futures:
                art = future.result()
                handed.add(future)
                yield art
        except BaseException as exc:
            for future in futures:
                future.cancel()
            interrupted = isinstance(exc, KeyboardInterrupt)
            if interrupted:
                # Ctrl-C or SIGTERM: the dumps run in worker threads, which no signal reaches;
                # what they are blocked on ends now (the whole run is being aborted). After a
                # mere failure the running ones finish, and the failure is the one said.
                process.kill_all()
            try:
                wait(futures, timeout=job.timeout)
            finally:
                if interrupted:
                    process.end_abort()
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
        if checked.ok and PgDump.of(art).chunked:
            _check_chunks(store, art, checked)
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
                with plain_pipe(hashing, art, snapshot_timeout(), store) as fh:
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
        opts = job.options if isinstance(job.options, PgRestoreOptions) else PgRestoreOptions()
        cfg = on_server(job.cfg, *opts.server) if any(opts.server) else job.cfg
        arts = [(a, PgDump.of(a)) for a in job.artifacts(self.name)]
        dumps = [(a, d) for a, d in arts if not d.roles]
        if opts.database is not None:
            dumps = [(a, d) for a, d in dumps if d.database == opts.database]
        if not dumps:
            what = f"database {opts.database}" if opts.database else self.name
            raise refused(f"the backup of {job.manifest.tag} has no {what} artifact.")
        if len(dumps) > 1:
            names = ", ".join(str(d.database) for _, d in dumps)
            raise usage(f"the backup of {job.manifest.tag} holds several databases ({names}); "
                        "choose one with --database.")
        roles = next((a for a, d in arts if d.roles), None)
        if opts.with_roles and roles is not None and not job.signed \
                and not opts.trust_unsigned_roles:
            # The roles script is the one artifact psql runs: only from a manifest whose
            # signature ties it to a key the tag policy allows, whatever signed_manifests says.
            raise refused(f"--with-roles applies roles only from a manifest signed by an allowed "
                          f"key, and the manifest of {job.manifest.tag} is not; restore without "
                          "--with-roles, or add --trust-unsigned-roles if you trust the store.")
        return restore_into(settings(cfg), job.store, dumps[0][0], job.target, job.timeout,
                       roles=roles, with_roles=opts.with_roles,
                       allow_privileged=opts.allow_privileged_roles, jobs=opts.jobs,
                       into_empty=opts.into_empty)

    def preflight(self, cfg: Config) -> list[Check]:
        pcfg = settings(cfg)
        from taydash_hooks.snapshots.kinds.postgres.client import passes_environment
        found = [tool_check(tool, "postgresql-client", prefix=pcfg.exec)
                 for tool in ("pg_dump", "pg_restore", "pg_dumpall")]
        client = PgClient.of(pcfg)
        try:
            res = client.psql("SELECT 1;\n", pcfg.databases[0] if pcfg.databases else "postgres",
                              timeout=15)
            ok, detail = res.returncode == 0, " / ".join(res.err.strip().splitlines()[:2])
        except (process.Timeout, TaydashError) as exc:
            ok, detail = False, str(exc)
        if not pcfg.exec:
            source = "~/.pgpass or PGPASSWORD"
        elif passes_environment(pcfg.exec):
            source = ("PGPASSWORD in taydash's environment: it is passed into the container by "
                      "name (exec -e PGPASSWORD), never in argv; this host's ~/.pgpass is not "
                      "seen inside the container")
        else:
            source = "a .pgpass inside the container (this exec prefix passes no environment)"
        found.append(Check("PostgreSQL", ok, f"{client.where} as {pcfg.user}" if ok else detail,
                           f"check [snapshots.postgres] host, port and user (pg_isready -h "
                           f"{pcfg.host} -p {pcfg.port}); the password comes from {source}"))
        return found

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path,
              commit: str = "") -> str:
        pcfg = settings(cfg)
        if PgDump.of(art).roles:  # a drill never changes the server's roles: it reads the script
            script = read_roles(store, art, snapshot_timeout())
            return f"roles script readable ({plural(len(script.roles), 'role')})"
        name = f"taydash_drill_{secrets.token_hex(6)}"
        try:
            return restore_into(pcfg, store, art, name, snapshot_timeout())
        finally:
            drop(pcfg, name)  # scratch only: dropped whatever happened

    def shares_objects(self, cfg: Config) -> bool:
        return settings(cfg).dedup

    def stack_prefix(self, cfg: Config) -> tuple[str, ...] | None:
        return tuple(settings(cfg).exec) or None

    def into_stack(self, job: StackJob) -> list[str]:
        """Each database of the backup under its own name into the stack's PostgreSQL (an
        empty one its image made is replaced), once that server answers."""
        import time

        pcfg = settings(job.cfg)
        turned = replace(pcfg, exec=job.turn(tuple(pcfg.exec)))
        client = PgClient.of(turned)
        deadline = time.monotonic() + READY_TIMEOUT
        while not client.server_version():  # a fresh container runs initdb first
            if time.monotonic() > deadline:
                raise environment(f"the stack's PostgreSQL did not answer in {READY_TIMEOUT:g} s.")
            time.sleep(1)
        done = []
        for art in job.manifest.of_kind(self.name):
            dump = PgDump.of(art)
            if dump.roles or not dump.database:
                continue  # a fresh cluster: objects owned by the connecting user, as said
            try:
                done.append(restore_into(turned, job.store, art, dump.database, job.timeout,
                                         into_empty=True))
            except TaydashError as exc:
                raise TaydashError(f"database {dump.database}: {exc.message}", exc.code) from None
        return done

    def clean_leftovers(self, cfg: Config, notes: list[str]) -> int:
        return 0  # nothing outside the store to undo

    def remove(self, store: Store, art: Artifact) -> None:
        # Every version: the key carries this run's id, so each of its versions is this
        # backup's, the one `objects promote` wrote included.
        store.delete(art.key)
        if art.sha256_key:
            store.delete(art.sha256_key)

