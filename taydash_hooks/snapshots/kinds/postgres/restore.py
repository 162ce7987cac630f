"""``restore db``: one stored dump into a new database, in one pass.

store -> SHA-256 -> gpg -> zstd -> pg_restore, with nothing of the dump on disk. The archive's
table of contents (its first bytes) is read first, by ``pg_restore --create --schema-only``,
which stops there; the bytes it took are kept (in memory; on disk past 8 MiB, a schema of many
thousand objects) and replayed in front of the rest for the restore itself. So a dump that
pg_restore cannot read creates no database, and what belongs to the database itself is known
before it exists: it is created as pg_restore --create would create it (from template0, with
the archive's encoding, locale and settings), and its owner and grants follow the data
(:mod:`.database`). Every stored byte is hashed on the way; when the hash does not match at
the end, the new database is dropped and the restore refused.

``--jobs N`` (pg_restore -j reads a file, not a pipe) writes the plain archive to a temp file
first and restores from it once its hash is known to be right.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from taydash_hooks.config import PostgresConfig
from taydash_hooks.errors import TaydashError, environment, refused, usage
from taydash_hooks.output import Progress, plural, say
from taydash_hooks.snapshots.compress import pumped
from taydash_hooks.snapshots.kinds.postgres import database as pg_database
from taydash_hooks.snapshots.kinds.postgres import versions
from taydash_hooks.snapshots.kinds.postgres.archive import PgDump, plain_reader
from taydash_hooks.snapshots.kinds.postgres.client import PgClient
from taydash_hooks.snapshots.kinds.postgres.server import (
    apply_roles,
    check_target_name,
    create_database,
    database_exists,
    drop,
    drop_empty,
    drop_roles,
    empty_database,
    existing_roles,
    read_roles,
    remake_empty,
    taken_message,
)
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.snapshots.stored import corrupt_message
from taydash_hooks.store import Store
from taydash_hooks.store.base import CHUNK, HashingReader

# The table of contents read ahead stays in memory up to this size; a dump's data never does.
KEPT_IN_MEMORY = 8 * 1024 * 1024


def restore(cfg: PostgresConfig, store: Store, artifact: Artifact, target: str, timeout: float,
            *, roles: Artifact | None = None, with_roles: bool = False,
            allow_privileged: bool = False, jobs: int = 1, into_empty: bool = False) -> str:
    """Create ``target`` (refusing an existing one) and restore ``artifact`` into it in one pass
    (see the module); ``jobs`` > 1 restores in parallel from a temp file.

    ``with_roles`` first creates the roles recorded in ``roles`` that the server lacks and then
    keeps the dump's owners; without it, objects belong to the restoring user. Whatever fails,
    the database and the roles this call created are removed again.

    ``into_empty``: an existing ``target`` that holds nothing of its own (a fresh container's
    POSTGRES_DB) is replaced by the dump's database; a failed restore makes it again as it was.
    """
    check_target_name(target)
    if PgDump.of(artifact).roles:
        raise usage(f"{artifact.key} is the roles script, not a database dump.")
    if with_roles and roles is None:
        raise refused("this backup has no roles script (taken with roles = false, or before "
                      "taydash recorded roles); restore without --with-roles.")
    if jobs > 1 and cfg.exec:
        raise usage("--jobs needs pg_restore on this host: behind an exec prefix it can only "
                    "read stdin, and parallel restore reads a file.")
    exists = database_exists(cfg, target) if with_roles or into_empty else False
    # Asked before a role is created for nothing: taken, or (into_empty) not empty.
    empty = empty_database(cfg, target) if into_empty and exists else None
    if exists and empty is None:
        raise refused(taken_message(target))
    created_roles = (apply_roles(cfg, store, roles, timeout, allow_privileged)
                     if with_roles and roles else [])
    restoring = _Restoring(cfg, store, artifact, target, timeout, roles, with_roles)
    dropped = False
    try:
        if empty is not None:
            drop_empty(cfg, empty)
            dropped = True
            say(f"database {target} was empty: it is replaced by the dump's (made again as it "
                "was if the restore fails)")
        with tempfile.TemporaryDirectory(prefix="taydash-restore-") as tmp:
            if jobs > 1:
                restoring.from_file(Path(tmp) / "archive", jobs)
            else:
                restoring.in_one_pass(Path(tmp))
        return restoring.finish()
    except BaseException:
        if restoring.created:
            drop(cfg, target)  # we created it a moment ago: no half-restored database stays
        if dropped and empty is not None:
            remake_empty(cfg, empty)  # what was there before: an empty database, as it was
        drop_roles(cfg, created_roles)
        raise


# "ALTER TABLE public.readings OWNER TO app;" in pg_restore's SQL (the database's own owner,
# ALTER DATABASE, is pg_database's and comes back either way).
_OWNER = re.compile(r'^ALTER (?!DATABASE )[A-Z ]+ .+ OWNER TO ("(?:[^"]|"")+"|[^\s;]+);$', re.M)


class _Restoring:
    """One ``restore db`` under way; ``created`` once the new database exists."""

    def __init__(self, cfg: PostgresConfig, store: Store, art: Artifact, target: str,
                 timeout: float, roles: Artifact | None, with_roles: bool) -> None:
        self.cfg, self.store, self.art, self.target = cfg, store, art, target
        self.timeout, self.roles, self.with_roles = timeout, roles, with_roles
        self.client = PgClient.of(cfg)
        self.created = False
        self.server_refused = False  # the server would not create it: no fault of the dump
        self.first: pg_database.Applied | None = None  # before the data (pg_database.before)
        self.own: pg_database.Applied | None = None  # after it (pg_database.plan)
        self.owners: list[str] = []  # the object owners the archive records

    def in_one_pass(self, tmp: Path) -> None:
        with _incoming(self, "restoring") as plain, \
                tempfile.SpooledTemporaryFile(KEPT_IN_MEMORY, dir=str(tmp)) as kept:
            with pumped(_Tee(plain, kept)) as head:
                listed = self._toc(stdin=head)
            self._create(listed)
            kept.seek(0)
            # Through stdin so an `exec` prefix (docker compose exec -T) works the same.
            with pumped(_Replay(kept, plain)) as fh:
                restored = self.client.run("pg_restore", *self._owners(), "--exit-on-error",
                                           f"--dbname={self.target}", stdin=fh,
                                           timeout=self.timeout)
            if restored.returncode != 0:
                raise self._failed(restored.err)

    def from_file(self, archive: Path, jobs: int) -> None:
        with _incoming(self, "fetching") as plain, archive.open("wb") as out:
            while chunk := plain.read(CHUNK):
                out.write(chunk)
        self._create(self._toc(archive=archive))  # the hash was right: only now
        restored = self.client.run("pg_restore", "-j", str(jobs), *self._owners(),
                                   "--exit-on-error", f"--dbname={self.target}", str(archive),
                                   timeout=self.timeout)
        if restored.returncode != 0:
            raise self._failed(restored.err)

    def _owners(self) -> list[str]:
        return [] if self.with_roles else ["--no-owner"]

    def _toc(self, stdin: IO[bytes] | None = None, archive: Path | None = None) -> str:
        """The archive's table of contents as SQL (``--create``: with the database's own
        statements); pg_restore reads no further than the table of contents for it."""
        listed = self.client.run("pg_restore", "--create", "--schema-only", "--file=-",
                                 *([str(archive)] if archive else []), stdin=stdin,
                                 timeout=self.timeout, connect=False)
        if listed.returncode != 0:
            raise environment(f"pg_restore cannot read the archive {self.art.key}: "
                              f"{self._versions() or listed.err.strip()[-300:]}")
        return listed.out

    def _create(self, listed: str) -> None:
        """The new database, created as the archive's was (encoding, locale, the settings the
        data may depend on); what needs roles is planned for after the data."""
        # Owners other than the restoring user: those are what --no-owner does not keep.
        self.owners = sorted({m.strip('"') for m in _OWNER.findall(listed)} - {self.cfg.user})
        source = PgDump.of(self.art).database
        spec = pg_database.parse(listed, source) if source else None
        if spec is not None and spec.dumped is not None and spec.dumped != source:
            # Another database's dump under this entry: its statements would be skipped as
            # not this database's, and its objects land in the target as if they were.
            raise refused(f"the archive {self.art.key} is a dump of database {spec.dumped!r}, "
                          f"but its manifest entry says {source!r}: it was swapped in the "
                          "store. Nothing was restored.")
        self.first = pg_database.before(spec, self.target)
        try:
            there = create_database(self.cfg, self.target, self.timeout, self.first)
        except TaydashError:
            self.server_refused = True
            raise
        self.created = True
        if spec is not None:
            self.own = pg_database.plan(spec, self.target, set(there))

    def finish(self) -> str:
        """The database's own statements left for after the data and the count of what came
        back, in one psql (each client start is a round trip the restore waits for); the
        sentence to print."""
        own = self.own
        applied = own.sql if own and own.done else ""
        counted = self.client.psql(applied + _COUNT_TABLES, self.target, timeout=self.timeout)
        if counted.returncode != 0:
            raise environment(f"applying the database's owner, grants and settings to "
                              f"{self.target} failed: {counted.err.strip()[-300:]}")
        if own is not None and self.first is not None:
            done, skipped = self.first.done + own.done, self.first.skipped + own.skipped
            say(f"database {self.target}: {', '.join(done) or 'nothing of its own'} applied"
                + (f"; not applied: {'; '.join(skipped)}" if skipped else ""))
        if not self.with_roles and self.owners:
            # --no-owner: every object now belongs to whoever restored it. Said, so the
            # restore never reads as faithful when the owners did not come back.
            say(f"owners not kept: every object in {self.target} now belongs to "
                f"{self.cfg.user} (the dump's owners: {', '.join(self.owners[:8])}"
                f"{', ...' if len(self.owners) > 8 else ''}); restore with --with-roles to "
                "keep them")
        numbers = counted.out.strip().split("\x1f")
        what = (f"{plural(int(numbers[0]), 'table')}, {plural(int(numbers[1]), 'view')}"
                if len(numbers) == 2 and all(n.isdigit() for n in numbers) else "? tables")
        dump = PgDump.of(self.art)
        size = dump.plain_size if dump.chunked else self.art.size
        return f"restored {dump.database} ({size} bytes, {what}) into {self.target}"

    def _versions(self) -> str | None:
        """Why this pg_restore or server cannot take the dump, told from the versions."""
        client, dump = self.client, PgDump.of(self.art)
        return versions.restore_problem(dump.dumped_with, dump.server_version,
                                        client.tool_version("pg_restore"),
                                        client.server_version(), client.where)

    def _failed(self, err: str) -> TaydashError:
        """pg_restore failed: why, when it can be told (versions, missing roles)."""
        client = self.client
        why = self._versions()
        if why is None and self.roles is not None and not self.with_roles:
            missing: list[str] = []
            with contextlib.suppress(TaydashError):
                missing = sorted(set(read_roles(self.store, self.roles, self.timeout).roles)
                                 - set(existing_roles(self.cfg)))
            if missing:
                why = (f"{err.strip()[-300:]} (the roles {', '.join(missing[:5])} recorded "
                       f"with this backup do not exist on {client.where}: add --with-roles to "
                       "create them first)")
        return environment(f"pg_restore into {self.target} failed: {why or err.strip()[-300:]}")


_COUNT_TABLES = ("SELECT count(*) FILTER (WHERE table_type = 'BASE TABLE'), "
                 "count(*) FILTER (WHERE table_type = 'VIEW') FROM information_schema.tables "
                 "WHERE table_schema NOT IN ('pg_catalog', 'information_schema');\n")


@contextlib.contextmanager
def _incoming(run: _Restoring, label: str) -> Iterator[Any]:
    """The stored dump's plain archive, read as it arrives, every stored byte hashed. When the
    block ends, whatever was not read is hashed too; a hash that is not the manifest's is
    refused, and said instead of any other failure (a corrupt object is the likelier cause),
    except a refusal of the server's that has nothing to do with the dump (the name is taken):
    that is said at once, without reading the rest of a dump that may be gigabytes away."""
    art = run.art
    with run.store.open(art.key) as raw:
        hashing = HashingReader(raw)

        def judge() -> None:
            while hashing.read(CHUNK):
                pass
            got = hashing.sha.hexdigest()
            if got != art.sha256 or hashing.size != art.size:
                dropped = (f"; the database {run.target} restored from it was dropped"
                           if run.created else "")
                raise refused(corrupt_message(art, got) + dropped) from None

        try:
            with plain_reader(Progress(hashing, f"{label} {art.key}"), art, run.timeout,
                              run.store) as plain:
                yield plain
                while plain.read(CHUNK):  # what pg_restore left unread (a stream's end)
                    pass
        except Exception:
            if not run.server_refused:
                judge()
            raise
        judge()


class _Tee:
    """Reads ``source``, keeping a copy of every byte read in ``copy``."""

    def __init__(self, source: Any, copy: IO[bytes]) -> None:
        self.source, self.copy = source, copy

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.source.read(n)
        self.copy.write(data)
        return data


class _Replay:
    """``kept`` (rewound by the caller) to its end, then the rest of ``source``."""

    def __init__(self, kept: IO[bytes], source: Any) -> None:
        self.kept: IO[bytes] | None = kept
        self.source = source

    def read(self, n: int = -1) -> bytes:
        if self.kept is not None:
            data = self.kept.read(n)
            if data:
                return data
            self.kept = None
        result: bytes = self.source.read(n)
        return result
