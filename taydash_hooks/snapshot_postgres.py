"""PostgreSQL: stream ``pg_dump -Fc`` through SHA-256 into the store; restore with pg_restore.

No temp file on the way out: memory is bounded by the store's part size.
Passwords come from libpq (.pgpass, PGPASSFILE, PGPASSWORD), never argv.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from taydash_hooks import process
from taydash_hooks.config import PostgresConfig
from taydash_hooks.errors import environment, refused
from taydash_hooks.output import say
from taydash_hooks.store import Store
from taydash_hooks.store.base import Written, copy_hashing


def _conn(cfg: PostgresConfig) -> list[str]:
    # --no-password: a hook has no terminal; a missing password fails instead of hanging.
    return ["-h", cfg.host, "-p", str(cfg.port), "-U", cfg.user, "--no-password"]


def tool_version(cfg: PostgresConfig, tool: str = "pg_dump") -> str:
    try:
        return process.run([*cfg.exec, tool, "--version"], timeout=30).out.strip()
    except (process.Timeout, Exception):
        return "unknown"


def dump_key(tag: str, ts: str, database: str, several: bool) -> str:
    return f"db-backups/{tag}_{ts}_{database}.dump" if several else f"db-backups/{tag}_{ts}.dump"


def dump(cfg: PostgresConfig, database: str, store: Store, key: str,
         timeout: float) -> dict[str, Any]:
    """Stream one database into ``key`` and write its ``.sha256`` sidecar."""
    argv = [*cfg.exec, "pg_dump", "-Fc", *_conn(cfg), f"--dbname={database}"]
    with tempfile.NamedTemporaryFile(prefix="taydash-pgdump-", suffix=".err") as err, \
            process.popen(argv, stdout=subprocess.PIPE, stderr=err) as proc:
        stream = process.ProducerStream(proc, "pg_dump", timeout, err.name)
        try:
            written: Written = store.put_stream(key, stream)  # type: ignore[arg-type]
        except process.ProducerFailed as exc:
            raise environment(f"dump of database {database} failed: {exc}.") from None
        except BaseException as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, process.ProducerFailed):
                raise environment(f"dump of database {database} failed: {cause}.") from None
            raise
        finally:
            stream.close()
    name = key.rsplit("/", 1)[-1]
    store.put_bytes(f"{key}.sha256", f"{written.sha256}  {name}\n".encode())
    say(f"taydash:   postgres {database}: {written.size} bytes -> {key}")
    return {"kind": "postgres", "database": database, "key": key, "size": written.size,
            "sha256": written.sha256, "version_id": written.version_id,
            "sha256_key": f"{key}.sha256"}


def download_verified(store: Store, artifact: dict[str, Any], dest: Path) -> None:
    """Download the current object to ``dest``; refuse it unless it hashes to the manifest's SHA-256.

    The current version, not the one the manifest pinned: what the store
    serves now is what must be trusted, and a replaced object is reported
    with the way back (`objects promote`).
    """
    with store.open(artifact["key"]) as src, dest.open("wb") as out:
        got = copy_hashing(src, out)
    if got != artifact["sha256"]:
        dest.unlink()
        raise refused(corrupt_message(artifact, got) + "; nothing was restored")


def corrupt_message(artifact: dict[str, Any], got: str) -> str:
    msg = (f"{artifact['key']} is corrupt: SHA-256 {got[:16]}... does not match the manifest's "
           f"{str(artifact['sha256'])[:16]}...")
    if artifact.get("version_id"):
        msg += (f" (the recorded version can be made current again: taydash objects promote "
                f"{artifact['key']} --version-id {artifact['version_id']})")
    return msg


def restore(cfg: PostgresConfig, store: Store, artifact: dict[str, Any], target: str,
            timeout: float) -> str:
    """Verify, create ``target`` (refusing an existing one) and pg_restore into it."""
    with tempfile.TemporaryDirectory(prefix="taydash-restore-") as tmp:
        local = Path(tmp) / "restore.dump"
        download_verified(store, artifact, local)
        created = process.run([*cfg.exec, "createdb", *_conn(cfg), "--", target], timeout=120)
        if created.returncode != 0:
            if "already exists" in created.err:
                raise refused(f"database {target} already exists; restore refuses to touch it "
                              "(choose another --target-db).")
            raise environment(f"createdb {target} failed: {created.err.strip()}")
        with local.open("rb") as fh:
            # Through stdin so an `exec` prefix (docker compose exec -T) works the same.
            restored = process.run(
                [*cfg.exec, "pg_restore", *_conn(cfg), "--no-owner", "--exit-on-error",
                 f"--dbname={target}"], stdin=fh, timeout=timeout)
        if restored.returncode != 0:
            raise environment(f"pg_restore into {target} failed: {restored.err.strip()[-300:]}")
    count = process.run(
        [*cfg.exec, "psql", *_conn(cfg), "-X", "-tA", f"--dbname={target}", "-c",
         "SELECT count(*) FROM information_schema.tables "
         "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"], timeout=60)
    tables = count.out.strip() or "?"
    return f"restored {artifact['database']} ({artifact['size']} bytes, {tables} tables) into {target}"


def drop(cfg: PostgresConfig, database: str) -> None:
    """Drop a scratch database made by a drill."""
    process.run([*cfg.exec, "dropdb", *_conn(cfg), "--if-exists", "--force", "--", database],
                timeout=120)
