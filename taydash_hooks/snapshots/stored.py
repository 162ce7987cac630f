"""Reading artifacts back from the store: streamed re-hashing, verified downloads."""

from __future__ import annotations

import shutil
from pathlib import Path

from taydash_hooks.errors import refused
from taydash_hooks.output import Progress
from taydash_hooks.snapshots.kinds.base import Checked
from taydash_hooks.snapshots.manifest import Artifact
from taydash_hooks.store import Store
from taydash_hooks.store.base import copy_hashing, sha256_of


def corrupt_message(art: Artifact, got: str) -> str:
    """The sentence for an object whose SHA-256 is not the manifest's (with the way back)."""
    msg = (f"{art.key} is corrupt: SHA-256 {got[:16]}... does not match the manifest's "
           f"{art.sha256[:16]}...")
    if art.version_id:
        msg += (f" (the recorded version can be made current again: taydash objects promote "
                f"{art.key} --version-id {art.version_id})")
    return msg


def check_object(store: Store, art: Artifact) -> Checked:
    """Re-hash a one-object artifact (streamed) and its ``.sha256`` sidecar."""
    checked = Checked()
    with store.open(art.key) as fh:
        got, size = sha256_of(fh)
    judge_hash(store, art, got, size, checked)
    return checked


def judge_hash(store: Store, art: Artifact, got: str, size: int, checked: Checked) -> None:
    """Record what re-hashing the one object of ``art`` found (``got``, ``size``: what was
    read), and check its ``.sha256`` sidecar."""
    checked.files, checked.bytes = 1, size
    if got != art.sha256:
        checked.problems.append(corrupt_message(art, got))
    if art.sha256_key:
        with store.open(art.sha256_key) as fh:
            sidecar = fh.read(4096).decode("utf-8", "replace").split()
        if not sidecar or sidecar[0] != art.sha256:
            checked.problems.append(f"{art.sha256_key} does not agree with the manifest")


def download_verified(store: Store, art: Artifact, dest: Path) -> None:
    """Download the current object to ``dest``; refuse it unless it hashes to the manifest's SHA-256.

    The current version, not the one the manifest pinned: what the store
    serves now is what must be trusted, and a replaced object is reported
    with the way back (`objects promote`).
    """
    with store.open(art.key) as src, dest.open("wb") as out:
        got = copy_hashing(Progress(src, f"downloading {art.key}"), out)  # type: ignore[arg-type]
    if got != art.sha256:
        dest.unlink()
        raise refused(corrupt_message(art, got) + "; nothing was restored")


def empty_dir(path: Path) -> None:
    """Remove everything inside ``path`` (which the caller found empty)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
