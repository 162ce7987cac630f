"""`taydash objects versions|get|promote`: object versions in the store."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from taydash_hooks.errors import Exit, refused
from taydash_hooks.output import say
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.location import open_repo_store
from taydash_hooks.store import Store
from taydash_hooks.store.base import copy_hashing, sha256_of


def expected_sha(store: Store, key: str) -> str | None:
    """The SHA-256 a manifest records for ``key`` (None when no manifest names it)."""
    for tag in manifest.all_tags(store):
        doc = manifest.load(store, tag)
        for art in doc.artifacts if doc else ():
            if art.key == key:
                return art.sha256
    return None


def versions(cwd: Path, key: str) -> int:
    _, _, store = open_repo_store(cwd)
    found = store.versions(key)
    if not found:
        raise refused(f"{key} has no versions in {store.url}.")
    if not store.properties().versioned:
        say(f"{store.url} keeps no object versions (a file store holds one copy of each key); "
            f"this is the only one:")
        for v in found:
            print(f"current\t{v.modified}\t{v.size}")
        return Exit.OK
    for v in found:
        print(f"{v.version_id}\t{v.modified}\t{v.size}\t{'latest' if v.latest else ''}".rstrip())
    return Exit.OK


def get(cwd: Path, key: str, version_id: str, output: Path) -> int:
    """Download one version to ``output``; refused (and not kept) when its checksum is wrong."""
    _, _, store = open_repo_store(cwd)
    want = expected_sha(store, key)
    tmp = output.with_name(f".{output.name}.partial")
    try:
        # 0600 from the first byte: a dump holds password hashes and every row.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with store.open(key, version_id) as src, os.fdopen(fd, "wb") as out:
            got = copy_hashing(src, out)
        if want is not None and got != want:
            raise refused(f"version {version_id} of {key} has SHA-256 {got[:16]}..., "
                          f"not the manifest's {want[:16]}...; not saved.")
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    note = "matches the manifest" if want else "no manifest names this key"
    say(f"saved {key} version {version_id} to {output} (sha256 {got}, {note})")
    return Exit.OK


def promote(cwd: Path, key: str, version_id: str) -> int:
    """Make an old version current again, after checking it against the manifest."""
    _, _, store = open_repo_store(cwd)
    want = expected_sha(store, key)
    if want is not None:
        with store.open(key, version_id) as src:
            got = sha256_of(src)[0]
        if got != want:
            raise refused(f"version {version_id} of {key} does not match the manifest; "
                          "refusing to make it current.")
    written = store.promote(key, version_id)
    say(f"{key}: version {version_id} is current again (new version {written.version_id})")
    return Exit.OK
