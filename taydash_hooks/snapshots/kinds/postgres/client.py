"""One client for every talk with PostgreSQL (pgBackRest's ``db/`` is the model).

Connection options, the exec prefix (``docker compose exec -T postgres``), ``psql -X``
with ``ON_ERROR_STOP``, timeouts, the server's version and the tools' versions live
here; no caller builds a ``psql`` argv of its own. Passwords come from libpq
(.pgpass, PGPASSFILE, PGPASSWORD), never argv; ``--no-password`` makes a missing
one fail instead of waiting for a terminal a hook does not have.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from taydash_hooks import process
from taydash_hooks.config import PostgresConfig
from taydash_hooks.errors import environment
from taydash_hooks.snapshots.kinds.postgres import versions as pg_versions

QUERY_TIMEOUT = 60.0
_SEP = "\x1f"  # field separator of query rows: a byte no name we read contains


def passes_environment(prefix: tuple[str, ...]) -> bool:
    """Whether ``prefix`` can pass a variable by name: docker / docker compose /
    docker-compose ``exec``."""
    return bool(prefix) and os.path.basename(prefix[0]) in ("docker", "docker-compose") \
        and "exec" in prefix


def passing_password(prefix: tuple[str, ...]) -> tuple[str, ...]:
    """``prefix`` with ``-e PGPASSWORD`` after its ``exec`` when PGPASSWORD is set and the
    prefix is ``docker exec``, ``docker compose exec`` or ``docker-compose exec``: the
    password reaches the container by name, from this process's environment, and never enters
    an argv or the configuration (a container sees nothing of the host's environment else)."""
    if not passes_environment(prefix) or not os.environ.get("PGPASSWORD") \
            or "PGPASSWORD" in prefix:
        return prefix
    at = prefix.index("exec") + 1
    return (*prefix[:at], "-e", "PGPASSWORD", *prefix[at:])


@dataclass(frozen=True)
class PgClient:
    """One PostgreSQL server as taydash reaches it (host, port, user, through ``exec``)."""

    host: str
    port: int
    user: str
    exec: tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg: PostgresConfig) -> PgClient:
        return cls(cfg.host, cfg.port, cfg.user, tuple(cfg.exec))

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def conn(self) -> list[str]:
        """libpq's connection flags, the same for every tool."""
        return ["-h", self.host, "-p", str(self.port), "-U", self.user, "--no-password"]

    def argv(self, tool: str, *args: str, connect: bool = True) -> list[str]:
        """``tool`` (pg_dump, pg_restore, psql, ...) through the exec prefix, connected to
        this server unless ``connect`` is false (a tool that only reads a file)."""
        return [*self.prefix(), tool if self.exec else _local(tool),
                *(self.conn() if connect else ()), *args]

    def prefix(self) -> tuple[str, ...]:
        """The exec prefix as it is run (with ``-e PGPASSWORD`` where that applies): what a
        command killed inside is found after (``inside_prefix``)."""
        return passing_password(self.exec)

    def run(self, tool: str, *args: str, stdin: IO[bytes] | None = None,
            timeout: float = QUERY_TIMEOUT, connect: bool = True) -> process.Result:
        """Run ``tool`` to completion (``stdin``: a stream to feed it, e.g. a dump). Behind an
        exec prefix that reaches no container, that is said (exit 3) instead of the tool's
        empty complaint."""
        res = process.run(self.argv(tool, *args, connect=connect), stdin=stdin, timeout=timeout,
                          inside_prefix=len(self.prefix()))
        if res.returncode != 0 and self.exec:
            from taydash_hooks.snapshots.kinds.place import no_container, unreachable

            reason = unreachable.__wrapped__(tuple(self.exec))  # asked now, not remembered
            if reason is not None:
                raise environment(no_container(tuple(self.exec), reason))
        return res

    def psql(self, sql: str, database: str = "postgres", *,
             variables: Mapping[str, str] | None = None, stop_on_error: bool = True,
             timeout: float = QUERY_TIMEOUT) -> process.Result:
        """Run ``sql`` through psql's stdin (``-X``: no ~/.psqlrc; ``ON_ERROR_STOP``: the first
        error ends it with a non-zero exit, unless ``stop_on_error`` is false: a clean-up that
        should do all it can). ``variables`` are psql variables, interpolated
        quoted where the script says ``:'name'``: values never become SQL text."""
        flags = ["-X", "-q", "-tA", "-F", _SEP, "-v", f"ON_ERROR_STOP={int(stop_on_error)}",
                 f"--dbname={database}"]
        for name, value in (variables or {}).items():
            flags += ["-v", f"{name}={value}"]
        return process.run(self.argv("psql", *flags), input=sql.encode(), timeout=timeout,
                           inside_prefix=len(self.prefix()))

    def query(self, sql: str, database: str = "postgres", *, what: str,
              variables: Mapping[str, str] | None = None) -> list[list[str]]:
        """The rows ``sql`` returns; exit 3 saying ``what`` could not be asked when it fails."""
        res = self.psql(sql, database, variables=variables)
        if res.returncode != 0:
            raise environment(f"cannot ask PostgreSQL at {self.where} {what}: "
                              f"{res.err.strip()[-500:]}")
        return rows(res)

    def server_version(self, database: str = "postgres") -> str:
        """The server's version ("18.6"); "" when it cannot be asked (the tool that runs next
        then says why)."""
        try:
            res = self.psql("SELECT current_setting('server_version_num');\n", database)
        except (process.Timeout, OSError):
            return ""
        num = res.out.strip()
        if res.returncode != 0 or not num.isdigit() or len(num) < 5:
            return ""
        value = int(num)
        return f"{value // 10000}.{value % 10000}"

    def ask_versions(self, database: str, tools: tuple[str, ...]) -> str:
        """:meth:`server_version`, with each of ``tools`` asked for its version meanwhile
        (remembered for :meth:`tool_version`): three process starts cost the time of one."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(tools), thread_name_prefix="taydash-v") as pool:
            for tool in tools:
                pool.submit(self.tool_version, tool)
            return self.server_version(database)

    def tool_version(self, tool: str = "pg_dump") -> str:
        """``tool --version`` (through the exec prefix), asked once per process."""
        return _version(self.exec, tool)

    def tool_number(self, tool: str = "pg_dump") -> str:
        """Just the number of :meth:`tool_version` ("15.18")."""
        return pg_versions.number(self.tool_version(tool))


_BINROOT = Path("/usr/lib/postgresql")


@functools.lru_cache(maxsize=16)
def _local(tool: str) -> str:
    """``tool`` as this host runs it. Debian's ``/usr/bin/psql`` (and every client tool) is
    pg_wrapper, a Perl script that costs about 80 ms a call before the tool starts; a restore
    makes seven such calls. Given ``-h``, as every connected call here is, pg_wrapper runs the
    newest installed version's binary, so that binary is run directly, and for the calls that
    only read a file too, so one process never mixes two versions."""
    found = shutil.which(tool)
    if found is None or Path(os.path.realpath(found)).name != "pg_wrapper":
        return tool
    best: tuple[tuple[int, ...], Path] | None = None
    for candidate in _BINROOT.glob(f"*/bin/{tool}"):
        version = candidate.parent.parent.name
        if version.replace(".", "").isdigit() and os.access(candidate, os.X_OK):
            key = tuple(int(part) for part in version.split(".") if part)
            if best is None or key > best[0]:
                best = (key, candidate)
    return str(best[1]) if best else tool


@functools.lru_cache(maxsize=16)
def _version(prefix: tuple[str, ...], tool: str) -> str:
    try:
        return process.run([*prefix, tool if prefix else _local(tool), "--version"],
                           timeout=30, inside_prefix=len(prefix)).out.strip()
    except Exception:
        return "unknown"


def rows(res: process.Result) -> list[list[str]]:
    """The rows psql printed (``-tA``, fields split on the separator)."""
    return [line.split(_SEP) for line in res.out.splitlines()]
