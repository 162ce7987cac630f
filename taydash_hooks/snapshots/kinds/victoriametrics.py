"""VictoriaMetrics: our own HTTP snapshot, a hash of every file, vmbackup into a new prefix.

vmbackup makes its destination mirror the snapshot (it deletes what is not
in it), so every backup goes to a new ``vm-backups/<tag>_<TS>/`` prefix.
vmrestore only checks sizes: `restore vm` re-hashes every file itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from taydash_hooks import process
from taydash_hooks.config import Config, VictoriaMetricsConfig
from taydash_hooks.errors import TaydashError, environment, refused, usage
from taydash_hooks.output import say
from taydash_hooks.results import Check
from taydash_hooks.snapshots import fields
from taydash_hooks.snapshots.kinds.base import (
    Checked,
    RestoreJob,
    RestoreOptions,
    StackJob,
    TakeJob,
    snapshot_timeout,
)
from taydash_hooks.snapshots.kinds.place import (
    FileHash,
    Inside,
    Place,
    compose_parts,
    place,
    tool_check,
)
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.store import Store
from taydash_hooks.store.base import CHUNK

COMPLETE = "backup_complete.ignore"
# Files vmbackup writes beside the data; every other stored object must be a
# part of a file the manifest lists.
BOOKKEEPING = frozenset({COMPLETE, "backup_metadata.ignore"})
# vmbackup and vmrestore serve /metrics on :8420/:8421 of every interface by default:
# two runs at once would collide, and nothing should listen beyond loopback.
QUIET_HTTP = ("-httpListenAddr=127.0.0.1:0",)
_STOP_RACE = "BUG: there is no http server at"
# What vmrestore itself leaves in a restored directory.
RESTORED_BOOKKEEPING = frozenset({"flock.lock"})
# vmbackup stores each file as parts: <file>/<file size>_<offset>_<part size>, in hex.
_PART = re.compile(r"([0-9A-F]{16})_([0-9A-F]{16})_([0-9A-F]{16})")


@dataclass(frozen=True)
class VmSnapshot:
    """What a ``victoriametrics`` artifact records: the snapshot's name and the SHA-256 and
    size of every file in it (the artifact's own sha256 is :func:`tree_digest` of these)."""

    snapshot: str | None
    files: dict[str, FileHash]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"files": {rel: {"sha256": f.sha256, "size": f.size}
                                         for rel, f in sorted(self.files.items())}}
        if self.snapshot is not None:
            doc["snapshot"] = self.snapshot
        return doc

    @classmethod
    def of(cls, art: Artifact) -> VmSnapshot:
        """The fields of ``art``, read strictly (it comes from the store): exit 1 otherwise."""
        with fields.of_artifact(art.kind, art.key, art.fields,
                                frozenset({"files", "snapshot"})) as f:
            raw = f.get("files") or {}
            if not isinstance(raw, dict):
                raise fields.Bad("files is not an object")
            files: dict[str, FileHash] = {}
            for rel, entry in raw.items():
                fields.store_key(rel, "a file name")
                if not isinstance(entry, dict):
                    raise fields.Bad(f"file {rel} is not an object")
                files[rel] = FileHash(fields.sha256(entry.get("sha256"), f"the hash of {rel}"),
                                      fields.size(entry, "size"))
            return cls(fields.string(f, "snapshot", True), files)


def _http(url: str, timeout: float = 60.0) -> dict[str, Any]:
    import urllib.request  # 16 ms (http.client, email, ssl): only a snapshot of this kind pays

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


def tree_digest(files: dict[str, FileHash]) -> str:
    """One SHA-256 over the sorted (path, file hash) list: the artifact's checksum."""
    sha = hashlib.sha256()
    for rel in sorted(files):
        sha.update(f"{files[rel].sha256}  {rel}\n".encode())
    return sha.hexdigest()


def _require(box: Place, binary: str, key: str) -> None:
    if not box.found(binary):
        raise environment(f"{binary} (snapshots.victoriametrics.{key}) was not found{box.label}; "
                          "the Debian package victoria-metrics brings it: apt-get install "
                          "victoria-metrics (or the vmutils image, inside a container).")


def tool_version(cfg: VictoriaMetricsConfig) -> str:
    """What vmbackup says of its version; Debian's build says nothing (its build info is
    stripped), so then the package that brought it, where one did ("victoria-metrics
    1.79.5+ds1-2+b5 (Debian package)"), else that the build reports none."""
    def ask(*argv: str) -> process.Result | None:
        try:
            return process.run([*cfg.exec, *argv], timeout=30, inside_prefix=len(cfg.exec))
        except (process.Timeout, OSError, TaydashError):
            return None  # not there, or hung: the snapshot itself says why, with the fix

    said = ask(cfg.vmbackup, "-version")
    if said is None:
        return "not asked: vmbackup did not answer"
    first = (said.out or said.err).strip().splitlines()
    if first and said.returncode == 0:
        return first[0]
    pkg = ask("dpkg-query", "-W", "-f", "${Version}", "victoria-metrics")
    if pkg is not None and pkg.returncode == 0 and pkg.out.strip():
        return f"victoria-metrics {pkg.out.strip()} (Debian package)"
    return "this vmbackup build reports no version"


# The S3 credentials go through stdin into a 0600 file that only lives while the tool
# runs, wherever it runs: never into argv (any local user reads those, and
# `docker compose exec -e K=V` would put them there) and never through the environment
# (a container does not see ours).
# The AWS SDK in vmbackup prefers AWS_* variables to the credentials file: whatever the
# operator's shell (or the container) has set, only taydash's credentials are used.
_WITH_CREDENTIALS = """umask 077
for v in $(env | sed -n 's/^\\(AWS_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset "$v"; done
f=$(mktemp) || exit 125
trap 'rm -f "$f"' EXIT
trap 'exit 143' HUP INT TERM
cat > "$f" || exit 125
"$@" -credsFilePath="$f"
rc=$?
rm -f "$f"
exit $rc
"""


def _run_tool(cfg: VictoriaMetricsConfig, name: str, argv: list[str], store: Store, prefix: str,
              flag: str, timeout: float, box: Place | None = None) -> None:
    """Run vmbackup or vmrestore (where ``cfg.exec`` says) with ``flag`` pointing at ``prefix``
    in the store; exit 3 with its last words when it fails."""
    props = store.properties()
    argv = [*argv, "-loggerLevel=ERROR", *QUIET_HTTP]
    creds = b""
    endpoint = ""
    if props.scheme == "file":
        if cfg.exec:
            raise usage("snapshots.victoriametrics.exec needs an s3:// store: vmbackup inside the "
                        "container cannot write to this host's folder "
                        f"{props.local_root}.")
        assert props.local_root is not None
        argv.append(f"{flag}=fs://{props.local_root / prefix.rstrip('/')}")
    else:
        full = f"{props.prefix}/{prefix.rstrip('/')}" if props.prefix else prefix.rstrip("/")
        endpoint = cfg.s3_endpoint or props.endpoint
        if "://" not in endpoint:
            endpoint = f"{'https' if props.secure else 'http'}://{endpoint}"
        argv += [f"{flag}=s3://{props.bucket}/{full}/", f"-customS3Endpoint={endpoint}",
                 "-s3ForcePathStyle"]
        creds = (f"[default]\naws_access_key_id={props.access_key}\n"
                 f"aws_secret_access_key={props.secret_key}\n").encode()
        argv = ["sh", "-c", _WITH_CREDENTIALS, "sh", *argv]
    box = box or where(cfg)
    try:
        res = process.run(box.command(argv), input=creds or None, timeout=timeout,
                          inside_prefix=box.prefix_len)
    except process.Timeout as exc:
        raise environment(str(exc)) from None
    if res.returncode != 0 and _STOP_RACE in res.err + res.out:
        # vmbackup/vmrestore 1.79 (Debian's) panic on exit when a run was shorter than the
        # start of their /metrics server: the work is done, only the exit failed (a rerun is
        # shorter still, and panics again). Not believed on its word: every caller checks the
        # result itself (vmbackup's backup_complete marker, every restored file's hash).
        # The panic's text is the only signal the tool gives.
        return
    if res.returncode != 0:
        against = (f" against {endpoint} with access key id {props.access_key}"
                   if props.scheme == "s3" else "")
        raise environment(f"{name}{box.label} failed{against}: "
                          f"{last_words(res.err or res.out) or f'exit {res.returncode}'}")


def last_words(err: str) -> str:
    """The line of a VictoriaMetrics tool's output that says why it stopped: its last line,
    or for a Go panic (whose last line is a stack frame) the panic itself."""
    lines = err.strip().splitlines()
    crash = [ln for ln in lines if ln.startswith(("panic: ", "fatal error: "))]
    return (crash or lines or [""])[0 if crash else -1].strip()


def where(cfg: VictoriaMetricsConfig) -> Place:
    """Where vmbackup, vmrestore and storage_data_path are: here, or behind ``exec``."""
    return place(cfg.exec)


def backup(cfg: VictoriaMetricsConfig, store: Store, prefix: str, timeout: float,
           remember: Callable[[str, str], None] = lambda kind, what: None) -> Artifact:
    """Snapshot, hash, vmbackup to ``prefix``; the snapshot is deleted whatever happens.

    The per-file SHA-256 is computed where the files are (through ``exec`` when the
    service runs in a container) before vmbackup reads them: it attests the
    snapshot itself, so verify later proves the store holds what VictoriaMetrics
    had, not merely what vmbackup uploaded.
    """
    box = where(cfg)
    _require(box, cfg.vmbackup, "vmbackup")
    if store.keys(prefix):
        raise refused(f"{prefix} already holds a backup; vmbackup would rewrite it.")
    name = create_snapshot(cfg)
    remember("victoriametrics", name)  # a SIGKILL skips the finally below: the next run deletes it
    try:
        snapdir = f"{cfg.storage_data_path.rstrip('/')}/snapshots/{name}"
        files = box.hash_tree(snapdir, timeout)
        if files is None:
            hint = ("" if cfg.exec else "; if VictoriaMetrics runs in a container, set "
                    "snapshots.victoriametrics.exec (e.g. [\"docker\", \"compose\", \"exec\", "
                    "\"-T\", \"victoriametrics\"])")
            raise usage(f"snapshot {name} is not under snapshots.victoriametrics.storage_data_path "
                        f"({cfg.storage_data_path}){box.label}; is it VictoriaMetrics' "
                        f"-storageDataPath{hint}?")
        _run_tool(cfg, "vmbackup", [cfg.vmbackup, f"-storageDataPath={cfg.storage_data_path}",
                                    f"-snapshotName={name}"], store, prefix, "-dst", timeout)
        if f"{prefix}{COMPLETE}" not in store.keys(prefix):
            raise environment(f"vmbackup finished without writing {COMPLETE}.")
        store.adopt(prefix)
    except BaseException:
        with contextlib.suppress(Exception):  # the failure that got us here is the one to say
            store.delete_prefix(prefix)
        raise
    finally:
        delete_snapshot(cfg, name)
    size = sum(f.size for f in files.values())
    say(f"  victoriametrics: {len(files)} files, {size} bytes -> {prefix}")
    return Artifact("victoriametrics", prefix, size, tree_digest(files),
                    fields=VmSnapshot(name, files).to_json())


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
    files = VmSnapshot.of(art).files
    for rel in sorted(set(parts) - set(files)):
        checked.problems.append(f"{rel} is in the store but not in the manifest")
    for rel, want in sorted(files.items()):
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


def check_files(box: Place, root: str, artifact: Artifact, timeout: float) -> list[str]:
    """Every file of the manifest present under ``root`` with its hash, and nothing else."""
    problems = []
    restored = box.hash_tree(root, timeout) or {}
    files = VmSnapshot.of(artifact).files
    for rel, want in sorted(files.items()):
        got = restored.get(rel)
        if got is None:
            problems.append(f"{rel} is missing")
        elif got.sha256 != want.sha256:
            problems.append(f"{rel} has SHA-256 {got.sha256[:12]}..., expected {want.sha256[:12]}...")
    for rel in sorted(set(restored) - set(files) - RESTORED_BOOKKEEPING):
        problems.append(f"{rel} was restored but is not in the manifest")
    return problems


def restore(cfg: VictoriaMetricsConfig, store: Store, artifact: Artifact, dest: str,
            timeout: float) -> str:
    """vmrestore into an empty ``dest`` (a path as the service sees it), then check every
    file against the manifest."""
    box = where(cfg)
    if cfg.exec and not dest.startswith("/"):
        raise usage(f"--storage-data-path {dest} must be absolute: it is a path inside "
                    f"`{' '.join(cfg.exec)}`.")
    _require(box, cfg.vmrestore, "vmrestore")
    if not box.is_empty(dest):
        raise refused(f"{dest}{box.label} is not empty; restore vm only writes into an empty "
                      "directory.")
    box.make_dir(dest)
    try:
        # Refused before anything is written: vmrestore would restore whatever the prefix holds.
        stored = check_stored(store, artifact)
        if not stored.ok:
            raise refused(f"the stored VictoriaMetrics backup does not match the manifest: "
                          f"{stored.problems[0]} ({len(stored.problems)} problem(s)); nothing was "
                          "restored.")
        _run_tool(cfg, "vmrestore", [cfg.vmrestore, f"-storageDataPath={dest}"], store,
                  artifact.key, "-src", timeout)
        problems = check_files(box, dest, artifact, timeout)
        if problems:
            raise refused(f"restored VictoriaMetrics data does not match the manifest: "
                          f"{problems[0]} ({len(problems)} problem(s)); nothing was kept in {dest}.")
    except BaseException:
        box.clear_dir(dest)  # it was empty: never leave data that failed its check behind
        raise
    return (f"restored {len(VmSnapshot.of(artifact).files)} files into {dest}{box.label}, "
            "every hash matches")


# The swap of an in-place restore, run in a one-off container of the stopped service: what
# the data path held moves into .taydash-before-STAMP, the verified restore takes its place.
_SWAP = r"""set -e
cd "$1"
keep=".taydash-before-$2"
mkdir "$keep"
for e in * .[!.]* ..?*; do
    [ -e "$e" ] || continue
    case "$e" in .taydash-restore|.taydash-before-*) continue ;; esac
    mv -- "$e" "$keep/"
done
for e in .taydash-restore/* .taydash-restore/.[!.]* .taydash-restore/..?*; do
    [ -e "$e" ] || continue
    mv -- "$e" .
done
rmdir .taydash-restore
"""


def restore_in_place(cfg: VictoriaMetricsConfig, store: Store, artifact: Artifact, dest: str,
                     timeout: float) -> str:
    """The service's own data, replaced as the by-hand recovery does it: stop the service,
    vmrestore into its data path (from a one-off container of it, so the volume is the one
    it runs on), check every file, keep what it held aside, start it again. Refused before
    anything stops when the stored backup does not match its manifest."""
    import time

    parts = compose_parts(tuple(cfg.exec))
    if parts is None:
        raise usage("--in-place needs [snapshots.victoriametrics] exec as a compose prefix "
                    "(docker compose [-p NAME] exec -T SERVICE): the service is stopped, its "
                    "data path restored from a one-off container of it, and started again.")
    base, service = parts
    if not dest.startswith("/"):
        raise usage(f"--storage-data-path {dest} must be absolute: it is the data path inside "
                    f"the {service} service.")
    stored = check_stored(store, artifact)
    if not stored.ok:
        raise refused(f"the stored VictoriaMetrics backup does not match the manifest: "
                      f"{stored.problems[0]} ({len(stored.problems)} problem(s)); nothing was "
                      "stopped or restored.")
    # sh as the entrypoint whatever the image's is (the vmutils images have their own).
    oneoff = Inside((*base, "run", "--rm", "--no-deps", "-T", "--entrypoint", "/bin/sh",
                     service, "-c", 'exec "$@"', "sh"))
    fresh = f"{dest.rstrip('/')}/.taydash-restore"
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())

    def compose(*args: str) -> None:
        res = process.run([*base, *args], timeout=120)
        if res.returncode != 0:
            raise environment(f"`{' '.join([*base, *args])}` failed: {last_words(res.err)}")

    compose("stop", service)
    try:
        oneoff.make_dir(fresh)
        oneoff.clear_dir(fresh)
        try:
            _run_tool(cfg, "vmrestore", [cfg.vmrestore, f"-storageDataPath={fresh}"], store,
                      artifact.key, "-src", timeout, box=oneoff)
            problems = check_files(oneoff, fresh, artifact, timeout)
            if problems:
                raise refused(f"restored VictoriaMetrics data does not match the manifest: "
                              f"{problems[0]} ({len(problems)} problem(s)); {dest} was left "
                              "as it was.")
            res = process.run(oneoff.command(["sh", "-c", _SWAP, "sh", dest, stamp]),
                              timeout=300, inside_prefix=oneoff.prefix_len)
            if res.returncode != 0:
                raise environment(f"moving the restored data into {dest} failed: "
                                  f"{last_words(res.err)}; what it held is in "
                                  f"{dest}/.taydash-before-{stamp}.")
        except BaseException:
            with contextlib.suppress(Exception):
                process.run(oneoff.command(["rm", "-rf", "--", fresh]), timeout=300,
                            inside_prefix=oneoff.prefix_len)
            raise
    finally:
        compose("start", service)
    return (f"restored {len(VmSnapshot.of(artifact).files)} files into {dest} of the {service} "
            f"service in place, every hash matches; what it held is kept in "
            f"{dest}/.taydash-before-{stamp} (remove it when satisfied); {service} started again")


@dataclass(frozen=True, kw_only=True)
class VmRestoreOptions(RestoreOptions):
    """``restore vm``'s own options, by name."""

    in_place: bool = False  # the running service's own data path (stop, restore, start)


def settings(cfg: Config) -> VictoriaMetricsConfig:
    """``[snapshots.victoriametrics]``, or its defaults when the table is absent."""
    return (cfg.snapshots.victoriametrics if cfg.snapshots else None) or VictoriaMetricsConfig()


class VictoriaMetrics:
    """The ``victoriametrics`` kind: an HTTP snapshot, per-file hashes, vmbackup to a new prefix."""

    name = "victoriametrics"
    drill_column: str | None = "vm restore"

    def configured(self, cfg: Config) -> bool:
        return bool(cfg.snapshots and cfg.snapshots.victoriametrics)

    def ready(self, cfg: Config, store: Store) -> None:
        vcfg = settings(cfg)
        props = store.properties()
        if vcfg.exec and props.scheme == "file":
            raise usage("snapshots.victoriametrics.exec needs an s3:// store: vmbackup inside the "
                        "container cannot write to this host's folder "
                        f"{props.local_root}. Nothing was taken.")

    def label(self, art: Artifact) -> str:
        return self.name

    def database(self, art: Artifact) -> str:
        return ""

    def file_names(self, cfg: Config, run: str) -> list[str]:
        return [run]  # the prefix vm-backups/<run>/; vmbackup's own names below it are short

    def tool_versions(self, cfg: Config) -> dict[str, str]:
        return {"vmbackup": tool_version(settings(cfg))}

    def take(self, job: TakeJob) -> Iterator[Artifact]:
        yield backup(settings(job.cfg), job.store, f"vm-backups/{job.tag}_{job.ts}/", job.timeout,
                     job.remember)

    def verify(self, cfg: Config, store: Store, art: Artifact, deep: bool) -> Checked:
        checked = check_stored(store, art)
        if deep and checked.ok:
            with tempfile.TemporaryDirectory(prefix="taydash-verify-vm-") as tmp:
                try:
                    self.drill(cfg, store, art, Path(tmp))
                except Exception as exc:
                    checked.problems.append(str(exc))
        return checked

    def restore(self, job: RestoreJob) -> str:
        # Behind an exec prefix the target is a path inside the container, taken as written
        # (and required absolute there); on the host it is relative to where the user stands.
        vcfg = settings(job.cfg)
        if isinstance(job.options, VmRestoreOptions) and job.options.in_place:
            return restore_in_place(vcfg, job.store, job.one(self.name),
                                    job.target or vcfg.storage_data_path, job.timeout)
        dest = job.target if vcfg.exec else str(job.cwd / job.target)
        return restore(vcfg, job.store, job.one(self.name), dest, job.timeout)

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path,
              commit: str = "") -> str:
        vcfg = settings(cfg)
        if not vcfg.exec:
            return restore(vcfg, store, art, str(scratch / "vm"), snapshot_timeout())
        with where(vcfg).scratch() as inside:  # a drill restores where the service runs
            return restore(vcfg, store, art, f"{inside}/vm", snapshot_timeout())

    def preflight(self, cfg: Config) -> list[Check]:
        import urllib.request

        vcfg = settings(cfg)
        found = [tool_check(vcfg.vmbackup, "victoria-metrics (it brings vmbackup)",
                            prefix=vcfg.exec),
                 tool_check(vcfg.vmrestore, "victoria-metrics (it brings vmrestore)",
                            prefix=vcfg.exec)]
        url = vcfg.url.rstrip("/")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:  # noqa: S310
                ok, detail = resp.status == 200, url
        except OSError as exc:
            ok, detail = False, f"{url} is not reachable ({getattr(exc, 'reason', exc)})"
        found.append(Check("VictoriaMetrics", ok, detail,
                           "check [snapshots.victoriametrics] url; is VictoriaMetrics running?"))
        store = cfg.snapshots.store if cfg.snapshots else ""
        if vcfg.exec and not store.startswith("s3://"):
            found.append(Check("VictoriaMetrics store", False,
                               "vmbackup inside the container cannot write to a file:// store",
                               "use an s3:// store (and s3_endpoint as seen from inside)"))
        return found

    def shares_objects(self, cfg: Config) -> bool:
        return False  # each backup its own prefix

    def stack_prefix(self, cfg: Config) -> tuple[str, ...] | None:
        return tuple(settings(cfg).exec) or None

    def into_stack(self, job: StackJob) -> list[str]:
        """The backup into the stack's own data path, in place (stop, vmrestore, hashes,
        start), as the by-hand recovery does it."""
        arts = job.manifest.of_kind(self.name)
        if not arts:
            return []
        vcfg = settings(job.cfg)
        turned = replace(vcfg, exec=job.turn(tuple(vcfg.exec)))
        return [restore_in_place(turned, job.store, arts[0], turned.storage_data_path,
                                 job.timeout)]

    def clean_leftovers(self, cfg: Config, notes: list[str]) -> int:
        vcfg = settings(cfg)
        listed = set(_http(vcfg.url.rstrip("/") + "/snapshot/list").get("snapshots") or [])
        gone = [name for name in notes if name in listed]
        for name in gone:
            delete_snapshot(vcfg, name)
        return len(gone)

    def remove(self, store: Store, art: Artifact) -> None:
        store.delete_prefix(art.key)
