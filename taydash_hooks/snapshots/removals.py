"""What retention removed on purpose: ``retention/<tag>/<run>.json``, signed like manifests.

A record says "the backup of this tag, this run, was removed on DAY". Two readers act on it:
:mod:`.expected` calls a tag without a backup "pruned" instead of missing (drill, health and
metrics then neither fail nor alert), and :func:`rollback_problem` refuses a manifest of a run
a record says was removed (an old, genuinely signed manifest put back after a delete is a
rollback to old data). Both are worth forging to someone who can write the store, so a record
is believed only as a manifest would be: its signature holds, and where ``signed_manifests``
is "required" an allowed key made it; its key names the tag and run its content names.
What is not believed is reported, never acted on.

Records written before they were signed (``retention/<tag>.json``) are read as unsigned.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from taydash_hooks.store import Store
from taydash_hooks.store.base import KeyTaken

if TYPE_CHECKING:
    from taydash_hooks import git
    from taydash_hooks.config import Config
    from taydash_hooks.snapshots.manifest import Manifest
    from taydash_hooks.snapshots.signing import Signature, Signer

PREFIX = "retention/"
MAX_BYTES = 64 * 1024


def key(tag: str, run: str) -> str:
    return f"{PREFIX}{tag}/{run}.json"


def sig_key(tag: str, run: str) -> str:
    return f"{key(tag, run)}.sig"


def _run(doc: Manifest) -> str:
    return doc.run or doc.timestamp


def record(store: Store, doc: Manifest, by: Signer | None) -> None:
    """Leave the record that ``doc``'s backup was removed on purpose, signed by ``by`` (None:
    nothing can sign here; the record is then unsigned, believed only where signatures are
    not required). Safe to rerun: a record already there stays."""
    run = _run(doc)
    data = json.dumps({"tag": doc.tag, "run": run, "tag_object": doc.tag_object,
                       "removed": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                      sort_keys=True).encode()
    if store.exists(key(doc.tag, run)):
        return
    # The signature first: a record never exists without the signature it was written with.
    if by is not None and not store.exists(sig_key(doc.tag, run)):
        with contextlib.suppress(KeyTaken):
            store.put_bytes(sig_key(doc.tag, run), by.sign(data))
    with contextlib.suppress(KeyTaken):
        store.put_bytes(key(doc.tag, run), data)


@dataclass(frozen=True)
class Removal:
    """One record as read: believed, or why not; its bytes and signature verdict (None when
    it never got as far as a signature check)."""

    key: str
    tag: str
    run: str
    removed: str
    why: str = ""  # empty when believed
    data: bytes = b""
    signature: Signature | None = None

    @property
    def believed(self) -> bool:
        return not self.why


def _read(repo: git.Repo, cfg: Config, store: Store, name: str) -> Removal:
    from taydash_hooks.snapshots import signing

    legacy = name.count("/") == 1  # retention/<tag>.json, from before records were signed
    tag = name[len(PREFIX):-len(".json")].split("/")[0]
    with store.open(name) as fh:
        data = fh.read(MAX_BYTES + 1)
    try:
        doc = json.loads(data) if len(data) <= MAX_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(f), str)
                                            for f in ("tag", "run", "removed")):
        return Removal(name, tag, "", "", "it is not a retention record")
    run, removed = doc["run"], doc["removed"]
    if doc["tag"] != tag or (not legacy and name != key(tag, run)):
        return Removal(name, tag, run, removed, f"it is named {name} but records the backup "
                       f"of {doc['tag']} (run {run})")
    if legacy:
        sig = signing.Signature(signing.State.UNSIGNED)
    else:
        sig = signing.check_payload(repo, cfg, store, data, sig_key(tag, run), removed)
    if not signing.believed(cfg, sig):
        return Removal(name, tag, run, removed, f"it is {sig.text()}"
                       + ("; signed_manifests = \"required\"" if sig.state is not
                          signing.State.REJECTED else ""), data, sig)
    return Removal(name, tag, run, removed, "", data, sig)


def read_all(repo: git.Repo, cfg: Config, store: Store) -> list[Removal]:
    """Every record in the store, each believed or with why not."""
    return [_read(repo, cfg, store, k) for k in sorted(store.keys(PREFIX)) if k.endswith(".json")]


def pruned(repo: git.Repo, cfg: Config, store: Store) -> tuple[set[str], list[str]]:
    """The tags whose backup retention removed (believed records), and a sentence for each
    record that is not believed."""
    tags: set[str] = set()
    problems: list[str] = []
    for r in read_all(repo, cfg, store):
        if r.believed:
            tags.add(r.tag)
        else:
            problems.append(f"{r.key}: not believed: {r.why}")
    return tags, problems


def rollback_problem(repo: git.Repo, cfg: Config, store: Store, doc: Manifest,
                     listed: set[str] | None = None) -> str | None:
    """Why ``doc`` is a backup retention removed, put back; None when no believed record
    says its run was removed. ``listed``: the record keys, when many manifests are judged."""
    name = key(doc.tag, _run(doc))
    if not (name in listed if listed is not None else store.exists(name)):
        return None
    found = _read(repo, cfg, store, name)
    if not found.believed:
        return None
    return (f"retention removed the backup of {doc.tag} (run {found.run}) on "
            f"{found.removed[:10]}: this manifest was put back in the store (a rollback to "
            "old data)")
