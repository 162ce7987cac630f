"""VictoriaMetrics: our own HTTP snapshot, a hash of every file, vmbackup into a new prefix.

vmbackup makes its destination mirror the snapshot (it deletes what is not
in it), so every backup goes to a new ``vm-backups/<tag>_<TS>/`` prefix.
vmrestore only checks sizes: `restore vm` re-hashes every file itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from taydash_hooks import process
from taydash_hooks.config import VictoriaMetricsConfig
from taydash_hooks.errors import environment, refused, usage
from taydash_hooks.output import say
from taydash_hooks.store import Store
from taydash_hooks.store.base import CHUNK

COMPLETE = "backup_complete.ignore"


def _http(url: str, timeout: float = 60.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - configured http(s) URL
            doc = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        # The URL is printed without its query: an auth key would sit there.
        raise environment(f"VictoriaMetrics at {url.split('?')[0]} is not reachable "
                          f"({getattr(exc, 'reason', exc)}).") from None
    if not isinstance(doc, dict) or doc.get("status") != "ok":
        raise environment(f"VictoriaMetrics refused {url.split('?')[0]}: {doc}")
    return doc


def create_snapshot(cfg: VictoriaMetricsConfig) -> str:
    name = _http(cfg.url.rstrip("/") + "/snapshot/create").get("snapshot")
    if not isinstance(name, str) or not name or "/" in name:
        raise environment(f"VictoriaMetrics returned an unusable snapshot name {name!r}.")
    return name


def delete_snapshot(cfg: VictoriaMetricsConfig, name: str) -> None:
    query = urllib.parse.urlencode({"snapshot": name})
    with contextlib.suppress(Exception):
        _http(cfg.url.rstrip("/") + f"/snapshot/delete?{query}")


def hash_tree(root: Path) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file under ``root`` (following the snapshot's symlinks)."""
    files: dict[str, dict[str, Any]] = {}
    for dirpath, _, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            sha = hashlib.sha256()
            size = 0
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    sha.update(chunk)
                    size += len(chunk)
            files[rel] = {"sha256": sha.hexdigest(), "size": size}
    return files


def tree_digest(files: dict[str, dict[str, Any]]) -> str:
    """One SHA-256 over the sorted (path, file hash) list: the artifact's checksum."""
    sha = hashlib.sha256()
    for rel in sorted(files):
        sha.update(f"{files[rel]['sha256']}  {rel}\n".encode())
    return sha.hexdigest()


def _require(binary: str, key: str) -> None:
    import shutil

    if shutil.which(binary) is None:
        raise environment(f"{binary} (snapshots.victoriametrics.{key}) was not found; the Debian "
                          "package victoria-metrics brings it: apt-get install victoria-metrics.")


def tool_version(binary: str) -> str:
    try:
        res = process.run([binary, "-version"], timeout=30)
        return (res.out or res.err).strip().splitlines()[0]
    except Exception:
        return "unknown"


def backup(cfg: VictoriaMetricsConfig, store: Store, prefix: str, timeout: float) -> dict[str, Any]:
    """Snapshot, hash, vmbackup to ``prefix``; the snapshot is deleted whatever happens."""
    _require(cfg.vmbackup, "vmbackup")
    if store.keys(prefix):
        raise refused(f"{prefix} already holds a backup; vmbackup would rewrite it.")
    name = create_snapshot(cfg)
    try:
        snapdir = Path(cfg.storage_data_path) / "snapshots" / name
        if not snapdir.is_dir():
            raise usage(f"snapshot {name} is not under snapshots.victoriametrics.storage_data_path "
                        f"({cfg.storage_data_path}); is it VictoriaMetrics' -storageDataPath?")
        files = hash_tree(snapdir)
        with store.vm_args() as extra:
            try:
                res = process.run(
                    [cfg.vmbackup, f"-storageDataPath={cfg.storage_data_path}",
                     f"-snapshotName={name}", f"-dst={store.vm_url(prefix)}",
                     "-loggerLevel=ERROR", *extra], timeout=timeout)
            except process.Timeout as exc:
                raise environment(str(exc)) from None
        if res.returncode != 0:
            detail = (res.err or res.out).strip().splitlines()
            raise environment(f"vmbackup failed: {detail[-1] if detail else f'exit {res.returncode}'}")
        if f"{prefix}{COMPLETE}" not in store.keys(prefix):
            raise environment(f"vmbackup finished without writing {COMPLETE}.")
    except BaseException:
        store.delete_prefix(prefix)
        raise
    finally:
        delete_snapshot(cfg, name)
    size = sum(f["size"] for f in files.values())
    say(f"taydash:   victoriametrics: {len(files)} files, {size} bytes -> {prefix}")
    return {"kind": "victoriametrics", "key": prefix, "size": size, "sha256": tree_digest(files),
            "snapshot": name, "files": files}


def check_files(root: Path, artifact: dict[str, Any]) -> list[str]:
    """Every file of the manifest present under ``root`` with its hash; the problems found."""
    problems = []
    restored = hash_tree(root)
    for rel, want in sorted(artifact.get("files", {}).items()):
        got = restored.get(rel)
        if got is None:
            problems.append(f"{rel} is missing")
        elif got["sha256"] != want["sha256"]:
            problems.append(f"{rel} has SHA-256 {got['sha256'][:12]}..., expected {want['sha256'][:12]}...")
    return problems


def restore(cfg: VictoriaMetricsConfig, store: Store, artifact: dict[str, Any], dest: Path,
            timeout: float) -> str:
    """vmrestore into an empty ``dest``, then check every file against the manifest."""
    _require(cfg.vmrestore, "vmrestore")
    if dest.exists() and any(dest.iterdir()):
        raise refused(f"{dest} is not empty; restore vm only writes into an empty directory.")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with store.vm_args() as extra:
            try:
                res = process.run([cfg.vmrestore, f"-src={store.vm_url(artifact['key'])}",
                                   f"-storageDataPath={dest}", "-loggerLevel=ERROR", *extra],
                                  timeout=timeout)
            except process.Timeout as exc:
                raise environment(str(exc)) from None
        if res.returncode != 0:
            detail = (res.err or res.out).strip().splitlines()
            raise environment(f"vmrestore failed: {detail[-1] if detail else f'exit {res.returncode}'}")
        problems = check_files(dest, artifact)
        if problems:
            raise refused(f"restored VictoriaMetrics data does not match the manifest: "
                          f"{problems[0]} ({len(problems)} problem(s)); nothing was kept in {dest}.")
    except BaseException:
        empty_dir(dest)  # it was empty: never leave data that failed its check behind
        raise
    return f"restored {len(artifact.get('files', {}))} files into {dest}, every hash matches"


def empty_dir(path: Path) -> None:
    """Remove everything inside ``path`` (which the caller found empty)."""
    import shutil

    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
