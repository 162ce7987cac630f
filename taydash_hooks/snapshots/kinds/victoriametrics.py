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
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taydash_hooks import process
from taydash_hooks.config import Config, VictoriaMetricsConfig
from taydash_hooks.errors import environment, refused, usage
from taydash_hooks.output import say
from taydash_hooks.snapshots.kinds.base import Checked, TakeJob, snapshot_timeout
from taydash_hooks.snapshots.manifest import Artifact, FileHash
from taydash_hooks.snapshots.stored import empty_dir
from taydash_hooks.store import Store
from taydash_hooks.store.base import CHUNK

COMPLETE = "backup_complete.ignore"
# Files vmbackup writes beside the data; every other stored object must be a
# part of a file the manifest lists.
BOOKKEEPING = frozenset({COMPLETE, "backup_metadata.ignore"})
# vmbackup and vmrestore serve /metrics on :8420/:8421 of every interface by default:
# two runs at once would collide, and nothing should listen beyond loopback.
QUIET_HTTP = ("-httpListenAddr=127.0.0.1:0",)
# What vmrestore itself leaves in a restored directory.
RESTORED_BOOKKEEPING = frozenset({"flock.lock"})
# vmbackup stores each file as parts: <file>/<file size>_<offset>_<part size>, in hex.
_PART = re.compile(r"([0-9A-F]{16})_([0-9A-F]{16})_([0-9A-F]{16})")


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


def hash_tree(root: Path) -> dict[str, FileHash]:
    """SHA-256 and size of every file under ``root`` (following the snapshot's symlinks)."""
    files: dict[str, FileHash] = {}
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
            files[rel] = FileHash(sha.hexdigest(), size)
    return files


def tree_digest(files: dict[str, FileHash]) -> str:
    """One SHA-256 over the sorted (path, file hash) list: the artifact's checksum."""
    sha = hashlib.sha256()
    for rel in sorted(files):
        sha.update(f"{files[rel].sha256}  {rel}\n".encode())
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


def _run_tool(name: str, argv: list[str], timeout: float) -> None:
    """Run vmbackup or vmrestore quietly; exit 3 with its last words when it fails."""
    try:
        res = process.run([*argv, "-loggerLevel=ERROR", *QUIET_HTTP], timeout=timeout)
    except process.Timeout as exc:
        raise environment(str(exc)) from None
    if res.returncode != 0:
        detail = (res.err or res.out).strip().splitlines()
        raise environment(f"{name} failed: {detail[-1] if detail else f'exit {res.returncode}'}")


@contextlib.contextmanager
def tool_args(store: Store, prefix: str) -> Iterator[list[str]]:
    """vmbackup/vmrestore's location flag for ``prefix`` plus what reaching the store needs.

    On S3 the credentials go into a 0600 file that is removed afterwards:
    never into argv, where any local user could read them.
    """
    props = store.properties()
    if props.scheme == "file":
        assert props.local_root is not None
        yield [f"fs://{props.local_root / prefix.rstrip('/')}"]
        return
    full = f"{props.prefix}/{prefix.rstrip('/')}" if props.prefix else prefix.rstrip("/")
    scheme = "https" if props.secure else "http"
    with tempfile.TemporaryDirectory(prefix="taydash-creds-") as tmp:
        path = Path(tmp) / "credentials"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"[default]\naws_access_key_id={props.access_key}\n"
                     f"aws_secret_access_key={props.secret_key}\n")
        yield [f"s3://{props.bucket}/{full}/", f"-customS3Endpoint={scheme}://{props.endpoint}",
               f"-credsFilePath={path}", "-s3ForcePathStyle"]


def backup(cfg: VictoriaMetricsConfig, store: Store, prefix: str, timeout: float) -> Artifact:
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
        with tool_args(store, prefix) as (dst, *extra):
            _run_tool("vmbackup", [cfg.vmbackup, f"-storageDataPath={cfg.storage_data_path}",
                                   f"-snapshotName={name}", f"-dst={dst}", *extra], timeout)
        if f"{prefix}{COMPLETE}" not in store.keys(prefix):
            raise environment(f"vmbackup finished without writing {COMPLETE}.")
        store.adopt(prefix)
    except BaseException:
        store.delete_prefix(prefix)
        raise
    finally:
        delete_snapshot(cfg, name)
    size = sum(f.size for f in files.values())
    say(f"  victoriametrics: {len(files)} files, {size} bytes -> {prefix}")
    return Artifact("victoriametrics", prefix, size, tree_digest(files), snapshot=name, files=files)


def stored_parts(store: Store, prefix: str) -> tuple[dict[str, list[tuple[int, int, int, str]]], list[str]]:
    """The parts of each file vmbackup stored under ``prefix``, and every key that is no part.

    A part is ``(file size, offset, part size, key)``; bookkeeping files are neither.
    """
    files: dict[str, list[tuple[int, int, int, str]]] = {}
    strays: list[str] = []
    for key in store.keys(prefix):
        rel = key[len(prefix):]
        if rel in BOOKKEEPING:
            continue
        parent, _, last = rel.rpartition("/")
        m = _PART.fullmatch(last)
        if not parent or m is None:
            strays.append(rel)
            continue
        total, offset, size = (int(g, 16) for g in m.groups())
        files.setdefault(parent, []).append((total, offset, size, key))
    return files, strays


def check_stored(store: Store, art: Artifact) -> Checked:
    """Re-hash every file of ``art`` from the parts in the store (streamed); list extras.

    vmrestore and our restore trust what the prefix holds, so an object the
    manifest does not list (another instance's part, say) is a failure too.
    """
    checked = Checked()
    keys = set(store.keys(art.key))
    if f"{art.key}{COMPLETE}" not in keys:
        checked.problems.append(f"{COMPLETE} is missing: the vmbackup did not finish")
    parts, strays = stored_parts(store, art.key)
    for rel in strays:
        checked.problems.append(f"{rel} is in the store but is no vmbackup part")
    for rel in sorted(set(parts) - set(art.files)):
        checked.problems.append(f"{rel} is in the store but not in the manifest")
    for rel, want in sorted(art.files.items()):
        found = sorted(parts.get(rel, []), key=lambda p: p[1])
        if not found:
            checked.problems.append(f"{rel} is missing from the store")
            continue
        sha, size = hashlib.sha256(), 0
        contiguous = all(p[0] == want.size for p in found)
        for _, offset, part_size, key in found:
            if offset != size:
                contiguous = False
                break
            with store.open(key) as fh:
                got = 0
                while chunk := fh.read(CHUNK):
                    sha.update(chunk)
                    got += len(chunk)
            if got != part_size:
                contiguous = False
                break
            size += got
        checked.files += 1
        checked.bytes += size
        if not contiguous or size != want.size:
            checked.problems.append(f"{rel} is stored with parts that do not add up to "
                                    f"{want.size} bytes")
        elif sha.hexdigest() != want.sha256:
            checked.problems.append(f"{rel} does not match the manifest: SHA-256 "
                                    f"{sha.hexdigest()[:12]}... in the store, expected "
                                    f"{want.sha256[:12]}...")
    return checked


def check_files(root: Path, artifact: Artifact) -> list[str]:
    """Every file of the manifest present under ``root`` with its hash, and nothing else."""
    problems = []
    restored = hash_tree(root)
    for rel, want in sorted(artifact.files.items()):
        got = restored.get(rel)
        if got is None:
            problems.append(f"{rel} is missing")
        elif got.sha256 != want.sha256:
            problems.append(f"{rel} has SHA-256 {got.sha256[:12]}..., expected {want.sha256[:12]}...")
    for rel in sorted(set(restored) - set(artifact.files) - RESTORED_BOOKKEEPING):
        problems.append(f"{rel} was restored but is not in the manifest")
    return problems


def restore(cfg: VictoriaMetricsConfig, store: Store, artifact: Artifact, dest: Path,
            timeout: float) -> str:
    """vmrestore into an empty ``dest``, then check every file against the manifest."""
    _require(cfg.vmrestore, "vmrestore")
    if dest.exists() and any(dest.iterdir()):
        raise refused(f"{dest} is not empty; restore vm only writes into an empty directory.")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        # Refused before anything is written: vmrestore would restore whatever the prefix holds.
        stored = check_stored(store, artifact)
        if not stored.ok:
            raise refused(f"the stored VictoriaMetrics backup does not match the manifest: "
                          f"{stored.problems[0]} ({len(stored.problems)} problem(s)); nothing was "
                          "restored.")
        with tool_args(store, artifact.key) as (src, *extra):
            _run_tool("vmrestore", [cfg.vmrestore, f"-src={src}", f"-storageDataPath={dest}",
                                    *extra], timeout)
        problems = check_files(dest, artifact)
        if problems:
            raise refused(f"restored VictoriaMetrics data does not match the manifest: "
                          f"{problems[0]} ({len(problems)} problem(s)); nothing was kept in {dest}.")
    except BaseException:
        empty_dir(dest)  # it was empty: never leave data that failed its check behind
        raise
    return f"restored {len(artifact.files)} files into {dest}, every hash matches"


def settings(cfg: Config) -> VictoriaMetricsConfig:
    """``[snapshots.victoriametrics]``, or its defaults when the table is absent."""
    return (cfg.snapshots.victoriametrics if cfg.snapshots else None) or VictoriaMetricsConfig()


class VictoriaMetrics:
    """The ``victoriametrics`` kind: an HTTP snapshot, per-file hashes, vmbackup to a new prefix."""

    name = "victoriametrics"
    drill_column: str | None = "vm restore"

    def configured(self, cfg: Config) -> bool:
        return bool(cfg.snapshots and cfg.snapshots.victoriametrics)

    def tool_versions(self, cfg: Config) -> dict[str, str]:
        return {"vmbackup": tool_version(settings(cfg).vmbackup)}

    def take(self, job: TakeJob) -> Iterator[Artifact]:
        yield backup(settings(job.cfg), job.store, f"vm-backups/{job.tag}_{job.ts}/", job.timeout)

    def verify(self, cfg: Config, store: Store, art: Artifact, deep: bool) -> Checked:
        checked = check_stored(store, art)
        if deep and checked.ok:
            with tempfile.TemporaryDirectory(prefix="taydash-verify-vm-") as tmp:
                try:
                    self.drill(cfg, store, art, Path(tmp))
                except Exception as exc:
                    checked.problems.append(str(exc))
        return checked

    def restore(self, cfg: Config, store: Store, art: Artifact, target: str) -> str:
        return restore(settings(cfg), store, art, Path(target), snapshot_timeout())

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path) -> str:
        return self.restore(cfg, store, art, str(scratch / "vm"))

    def remove(self, store: Store, art: Artifact) -> None:
        store.delete_prefix(art.key)
