"""The config bundle: tar the configured paths, encrypt to OpenPGP recipients, upload.

tar streams into gpg on a thread and gpg's output streams into the store;
the bundle is never written unencrypted, not even to a temp file.
"""

from __future__ import annotations

import contextlib
import re
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taydash_hooks import process
from taydash_hooks.config import Config, ConfigBundleConfig
from taydash_hooks.errors import TaydashError, environment, refused, usage
from taydash_hooks.output import say
from taydash_hooks.results import Check
from taydash_hooks.snapshots import fields
from taydash_hooks.snapshots.crypt import (
    CHUNK,
    NoSecretKey,
    decrypting,
    encrypting_writer,
    recipient_check,
)
from taydash_hooks.snapshots.kinds.base import (
    Checked,
    RestoreJob,
    StackJob,
    TakeJob,
    snapshot_timeout,
)
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.snapshots.stored import check_object, download_verified, empty_dir
from taydash_hooks.snapshots.unpack import unpack
from taydash_hooks.store import Store


@dataclass(frozen=True)
class Bundle:
    """What a ``config`` artifact records: the paths packed and who can decrypt them."""

    paths: tuple[str, ...]
    recipients: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"paths": list(self.paths), "recipients": list(self.recipients)}

    @classmethod
    def of(cls, art: Artifact) -> Bundle:
        """The fields of ``art``, read strictly (it comes from the store): exit 1 otherwise."""
        with fields.of_artifact(art.kind, art.key, art.fields,
                                frozenset({"paths", "recipients"})) as f:
            return cls(fields.strings(f, "paths"), fields.strings(f, "recipients"))


def bundle(cfg: Config, bcfg: ConfigBundleConfig, store: Store, key: str,
           timeout: float) -> Artifact:
    """Upload the encrypted bundle of ``bcfg.paths`` to ``key``."""
    if bcfg.paths and not bcfg.recipients:
        raise usage("[snapshots.config] has paths but no recipients; refusing to store them "
                    "unencrypted.")
    sources = [(p, cfg.path(p)) for p in bcfg.paths]
    missing = [p for p, path in sources if not path.exists()]
    if missing:
        raise usage(f"[snapshots.config] path {missing[0]!r} does not exist.")
    def pack(out: IO[bytes]) -> None:
        with tarfile.open(fileobj=out, mode="w|gz") as tar:
            for name, path in sources:
                tar.add(path, arcname=name.strip("/"))

    with encrypting_writer(pack, tuple(bcfg.recipients), timeout,
                           "packing the config bundle") as stream:
        try:
            written = store.put_stream(key, stream)  # type: ignore[arg-type]
        except BaseException as exc:
            cause = exc if isinstance(exc, process.ProducerFailed) else exc.__cause__ or exc.__context__
            if isinstance(cause, process.ProducerFailed):
                raise environment(f"config bundle failed: {cause}.") from None
            raise
    say(f"  config: {len(sources)} path(s), {written.size} bytes encrypted -> {key}")
    return Artifact("config", key, written.size, written.sha256, written.version_id,
                    fields=Bundle(tuple(bcfg.paths), tuple(bcfg.recipients)).to_json())


def restore(store: Store, artifact: Artifact, dest: Path, timeout: float) -> str:
    """Verify, decrypt (with the user's key) and unpack into an empty ``dest``; on any failure
    nothing is left there (not even the folder, when this made it)."""
    if dest.is_symlink() or (dest.exists() and any(dest.iterdir())):
        raise refused(f"{dest} is not an empty directory; restore config only unpacks into a "
                      "fresh one.")
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with tempfile.TemporaryDirectory(prefix="taydash-restore-") as tmp:
            local = Path(tmp) / "bundle.tar.gz.gpg"
            download_verified(store, artifact, local)
            with decrypting(local, "the config bundle", timeout) as plain:
                # Every member checked and written by us, never through a symlink.
                unpack(plain, dest)
                while plain.read(CHUNK):  # to gpg's end: its status decides, not tar's
                    pass
    except BaseException as exc:
        empty_dir(dest)  # it was empty: no half-unpacked bundle is left behind
        if made:
            with contextlib.suppress(OSError):
                dest.rmdir()
        if isinstance(exc, tarfile.TarError):
            raise refused(f"the config bundle is not a valid archive ({exc}).") from None
        raise
    return f"unpacked {', '.join(Bundle.of(artifact).paths)} into {dest}"


def listing(store: Store, artifact: Artifact, timeout: float) -> list[str]:
    """The member names of the bundle, decrypted with the user's key (nothing is unpacked)."""
    with tempfile.TemporaryDirectory(prefix="taydash-verify-") as tmp:
        local = Path(tmp) / "bundle.tar.gz.gpg"
        download_verified(store, artifact, local)
        with decrypting(local, "the config bundle", timeout) as plain:
            try:
                with tarfile.open(fileobj=plain, mode="r|gz") as tar:
                    names = [m.name for m in tar]
            except tarfile.TarError as exc:
                raise refused(f"the config bundle is not a valid archive ({exc}).") from None
            while plain.read(CHUNK):
                pass
    return names


_NAME = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def env_vars(text: str) -> dict[str, str]:
    """Name -> value, as written, of each variable a dotenv file sets (never printed)."""
    return {m.group(1): line[m.end():].strip() for line in text.splitlines()
            if (m := _NAME.match(line))}


def environment_check(cfg: Config, restored: Path, commit: str) -> str:
    """The seed's monthly "environment rebuild": every variable ``.env.example`` names at the
    backup's commit has a value in the restored ``.env``. Names only: no value is printed."""
    from taydash_hooks import git

    env = restored / ".env"
    example = git.git("show", f"{commit}:.env.example", cwd=cfg.root, check=False) \
        if commit else None
    if not env.is_file() or example is None or example.returncode != 0:
        return "bundle restored (no .env with an .env.example at the tag to compare)"
    named = set(env_vars(example.out))
    have = {name for name, value in env_vars(env.read_text()).items()
            if value not in ("", '""', "''")}
    missing = sorted(named - have)
    if missing:
        raise refused(f"the restored .env lacks a value for {', '.join(missing[:10])} "
                      f"(named in .env.example at {commit[:12]})")
    return f"every variable of .env.example has a value ({len(named)} names)"


class ConfigBundle:
    """The ``config`` kind: the configured paths as tar.gz, encrypted to the recipients."""

    name = "config"
    drill_column: str | None = "environment"

    def configured(self, cfg: Config) -> bool:
        return bool(cfg.snapshots and cfg.snapshots.config and cfg.snapshots.config.paths)

    def ready(self, cfg: Config, store: Store) -> None:
        return None  # every store holds it; a missing tool or server is met at once

    def label(self, art: Artifact) -> str:
        return self.name

    def database(self, art: Artifact) -> str:
        return ""

    def file_names(self, cfg: Config, run: str) -> list[str]:
        return [f"{run}.tar.gz.gpg"]

    def tool_versions(self, cfg: Config) -> dict[str, str]:
        return {}

    def take(self, job: TakeJob) -> Iterator[Artifact]:
        bcfg = job.cfg.snapshots.config if job.cfg.snapshots else None
        if bcfg is not None and bcfg.paths:
            yield bundle(job.cfg, bcfg, job.store, f"config-backups/{job.tag}_{job.ts}.tar.gz.gpg",
                         job.timeout)

    def verify(self, cfg: Config, store: Store, art: Artifact, deep: bool) -> Checked:
        checked = check_object(store, art)
        if deep and checked.ok:
            try:
                names = listing(store, art, snapshot_timeout())
                checked.notes.append(f"holds {', '.join(names[:10])}"
                                     + (f" (+{len(names) - 10} more)" if len(names) > 10 else ""))
            except NoSecretKey as exc:
                checked.not_possible.append(exc.message)
            except TaydashError as exc:
                checked.problems.append(exc.message)
        return checked

    def restore(self, job: RestoreJob) -> str:
        return restore(job.store, job.one(self.name), job.cwd / job.target, job.timeout)

    def drill(self, cfg: Config, store: Store, art: Artifact, scratch: Path,
              commit: str = "") -> str:
        dest = scratch / "config"
        restore(store, art, dest, snapshot_timeout())
        return environment_check(cfg, dest, commit)

    def preflight(self, cfg: Config) -> list[Check]:
        bcfg = cfg.snapshots.config if cfg.snapshots else None
        return [recipient_check(who) for who in (bcfg.recipients if bcfg and bcfg.paths else ())]

    def shares_objects(self, cfg: Config) -> bool:
        return False  # one archive per backup, shared with none

    def stack_prefix(self, cfg: Config) -> tuple[str, ...] | None:
        return None  # files, not a service: the environment takes its .env from the drill

    def into_stack(self, job: StackJob) -> list[str]:
        return []

    def clean_leftovers(self, cfg: Config, notes: list[str]) -> int:
        return 0  # nothing outside the store to undo

    def remove(self, store: Store, art: Artifact) -> None:
        store.delete(art.key)  # every version: the key is this run's alone (promoted ones too)
