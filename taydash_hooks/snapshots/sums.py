"""The signed checksum list of a backup: ``manifests/<tag>.SHA256SUMS`` and its ``.sig``.

Beside each manifest, the way distributions publish release files: one ``sha256sum -c`` line
per stored object (``<sha256>  <key>``, keys relative to the store's root), signed by the
key that signs the manifest. A recovery by hand (RECOVERY.md) checks that
signature first and then every file against the list; a sidecar (``<key>.sha256``) is
written by the same store writer as the file and proves nothing on its own.
"""

from __future__ import annotations

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.snapshots.kinds.base import Checked
from taydash_hooks.snapshots.manifest import Artifact, Manifest
from taydash_hooks.store import Store

MAX_BYTES = 4 * 1024 * 1024


def key(tag: str) -> str:
    return f"manifests/{tag}.SHA256SUMS"


def sig_key(tag: str) -> str:
    return f"{key(tag)}.sig"


def listing(artifacts: tuple[Artifact, ...] | list[Artifact]) -> bytes:
    """The list: every artifact stored as one object (a vmbackup prefix is checked after its
    restore, against the per-file hashes of the signed manifest)."""
    lines = sorted(f"{a.sha256}  {a.key}\n" for a in artifacts if not a.key.endswith("/"))
    return "".join(lines).encode()


def check(repo: git.Repo, cfg: Config, store: Store, doc: Manifest) -> Checked:
    """The stored list against the manifest (every line, nothing else), and its signature
    judged as the manifest's is. A backup taken before taydash wrote lists has none: a note."""
    from taydash_hooks.snapshots import signing

    found = Checked()
    if not store.exists(key(doc.tag)):
        found.notes.append(f"no {key(doc.tag)} (taken before taydash wrote signed checksum "
                           "lists)")
        return found
    with store.open(key(doc.tag)) as fh:
        data = fh.read(MAX_BYTES + 1)
    found.files, found.bytes = 1, len(data)
    if data != listing(doc.artifacts):
        found.problems.append(f"{key(doc.tag)} does not list exactly the manifest's files and "
                              "hashes")
    sig = signing.check_detached(repo, cfg, store, doc, data, sig_key(doc.tag))
    if sig.state is signing.State.REJECTED:
        found.problems.append(f"{sig_key(doc.tag)}: {sig.text()}")
    elif signing.mode(cfg) == "required" and not sig.allowed:
        found.problems.append(f"{key(doc.tag)} is {sig.text()}; signed_manifests = \"required\"")
    else:
        found.notes.append(f"checksum list {sig.text()}")
    return found
