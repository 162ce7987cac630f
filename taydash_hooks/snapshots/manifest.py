"""Manifests: ``manifests/<tag>.json``, written last, never overwritten.

A backup without its manifest does not exist for list, verify or restore.
A manifest comes from the store, which someone else may write to: it is
parsed into typed records and every field is checked before anything uses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taydash_hooks.errors import refused
from taydash_hooks.snapshots.fields import Bad, seconds, sha256, size, store_key, string, strings
from taydash_hooks.store import Store

FORMAT = 1
# Where a run's artifacts live; every key of a run is <folder><tag>_<TS>-<RUN>...
RUN_FOLDERS = ("db-backups/", "config-backups/", "vm-backups/")
MAX_BYTES = 64 * 1024 * 1024  # a manifest is JSON with one line per file: bounded


COMMON = frozenset({"kind", "key", "size", "sha256", "version_id", "sha256_key", "started",
                    "seconds"})


@dataclass(frozen=True)
class Artifact:
    """One stored thing of a backup (a dump, a vmbackup prefix, the config bundle).

    The fields here are every kind's; ``fields`` holds the kind's own (a database name,
    the hash of every snapshot file, the bundle's paths), as JSON: the kind that wrote
    them describes and reads them (``PgDump.of(art)``, ...) and refuses what it does not
    recognise, so this module never needs to know a kind.
    """

    kind: str
    key: str
    size: int
    sha256: str
    version_id: str | None = None
    sha256_key: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    started: str = ""  # when taking it began (UTC, ISO 8601): kinds run side by side
    seconds: float = 0.0  # how long taking it took

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {**self.fields, "kind": self.kind, "key": self.key,
                               "size": self.size, "sha256": self.sha256,
                               "version_id": self.version_id}
        if self.sha256_key is not None:
            doc["sha256_key"] = self.sha256_key
        if self.started:
            doc["started"], doc["seconds"] = self.started, self.seconds
        return doc


@dataclass(frozen=True)
class Manifest:
    """What binds a backup to its tag: who, when, which tag object and commit, which artifacts."""

    tag: str
    tag_object: str
    commit: str
    artifacts: tuple[Artifact, ...]
    tag_type: str = "tag"
    tagger: str = ""
    created: str = ""
    timestamp: str = ""
    store: str = ""
    tools: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT
    run: str = ""  # <TS>-<RUN>: the part of every artifact key that is this run's own
    taken_after_tag_s: int | None = None  # seconds between the tag and this snapshot
    # Kinds the configuration enabled that this backup lacks (`snapshot --only`): partial.
    missing_kinds: tuple[str, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)  # as stored: what is signed

    @property
    def partial(self) -> bool:
        return bool(self.missing_kinds)

    def of_kind(self, kind: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.kind == kind]

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "tag": self.tag, "tag_object": self.tag_object,
                "tag_type": self.tag_type, "commit": self.commit, "tagger": self.tagger,
                "created": self.created, "timestamp": self.timestamp, "store": self.store,
                "tools": dict(self.tools), "artifacts": [a.to_json() for a in self.artifacts],
                "run": self.run, "taken_after_tag_s": self.taken_after_tag_s,
                **({"partial": True, "missing_kinds": list(self.missing_kinds)}
                   if self.missing_kinds else {})}


def key(tag: str) -> str:
    return f"manifests/{tag}.json"


def _artifact(doc: Any) -> Artifact:
    if not isinstance(doc, dict):
        raise Bad("an artifact is not an object")
    sidecar = doc.get("sha256_key")
    return Artifact(
        kind=string(doc, "kind"), key=store_key(doc.get("key"), "key"), size=size(doc, "size"),
        sha256=sha256(doc.get("sha256"), "sha256"), version_id=string(doc, "version_id", True),
        sha256_key=store_key(sidecar, "sha256_key") if sidecar is not None else None,
        fields={k: v for k, v in doc.items() if k not in COMMON},
        started=string(doc, "started", True) or "",
        seconds=seconds(doc, "seconds"),
    )


def parse(data: bytes, where: str) -> Manifest:
    """A manifest from its JSON bytes; exit 1 with one sentence when it is not one."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise refused(f"{where} is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise refused(f"{where} is not a JSON object.")
    try:
        arts = doc.get("artifacts", [])
        if not isinstance(arts, list):
            raise Bad("artifacts is not a list")
        tools = doc.get("tools") or {}
        if not isinstance(tools, dict):
            raise Bad("tools is not an object")
        return Manifest(
            tag=string(doc, "tag"), tag_object=string(doc, "tag_object"), commit=string(doc, "commit"),
            artifacts=tuple(_artifact(a) for a in arts),
            tag_type=string(doc, "tag_type", True) or "tag", tagger=string(doc, "tagger", True) or "",
            created=string(doc, "created", True) or "", timestamp=string(doc, "timestamp", True) or "",
            store=string(doc, "store", True) or "",
            tools={str(k): str(v) for k, v in tools.items()},
            format=doc.get("format", FORMAT) if isinstance(doc.get("format"), int)
            and 0 < doc["format"] < 1000 else FORMAT,
            run=string(doc, "run", True) or "",
            taken_after_tag_s=size(doc, "taken_after_tag_s") if doc.get("taken_after_tag_s")
            is not None else None, raw=data, missing_kinds=strings(doc, "missing_kinds"),
        )
    except Bad as exc:
        raise refused(f"{where} is not a valid manifest ({exc}).") from None


def load(store: Store, tag: str) -> Manifest | None:
    """The manifest of ``tag``, or None when there is none."""
    if not store.exists(key(tag)):
        return None
    with store.open(key(tag)) as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise refused(f"the manifest of {tag} in {store.url} is larger than {MAX_BYTES} bytes.")
    return parse(data, f"the manifest of {tag} in {store.url}")


def require(store: Store, tag: str) -> Manifest:
    """The manifest of ``tag``; exit 1 when there is none."""
    doc = load(store, tag)
    if doc is None:
        raise refused(f"no backup of {tag} in {store.url} (no manifest {key(tag)}).")
    return doc


def load_all(store: Store) -> list[Manifest]:
    """Every manifest in the store, in tag order."""
    return [require(store, t) for t in all_tags(store)]


def all_tags(store: Store) -> list[str]:
    """Tags that have a manifest."""
    return sorted(k[len("manifests/"):-len(".json")] for k in store.keys("manifests/")
                  if k.endswith(".json"))


def dump(doc: Manifest) -> bytes:
    return (json.dumps(doc.to_json(), indent=2, sort_keys=True) + "\n").encode()
