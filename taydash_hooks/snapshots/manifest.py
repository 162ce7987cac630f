"""Manifests: ``manifests/<tag>.json``, written last, never overwritten.

A backup without its manifest does not exist for list, verify or restore.
A manifest comes from the store, which someone else may write to: it is
parsed into typed records and every field is checked before anything uses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taydash_hooks.errors import TaydashError, refused
from taydash_hooks.store import Store
from taydash_hooks.store.base import check_key

FORMAT = 1
MAX_BYTES = 64 * 1024 * 1024  # a manifest is JSON with one line per file: bounded


@dataclass(frozen=True)
class FileHash:
    """One file of a VictoriaMetrics snapshot."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Artifact:
    """One stored thing of a backup (a dump, a vmbackup prefix, the config bundle).

    The common fields are every kind's; the optional ones belong to one kind
    (``database``: postgres; ``files``/``snapshot``: victoriametrics;
    ``paths``/``recipients``: config).
    """

    kind: str
    key: str
    size: int
    sha256: str
    version_id: str | None = None
    sha256_key: str | None = None
    database: str | None = None
    files: dict[str, FileHash] = field(default_factory=dict)
    snapshot: str | None = None
    paths: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    encrypted_to: tuple[str, ...] = ()  # postgres: the dump was encrypted to these recipients
    compressed: str = ""  # postgres: "zstd" when we compressed it in the stream (.dump.zst)
    roles: bool = False  # postgres: pg_dumpall --globals-only (the roles), not a database dump
    server_version: str = ""  # postgres: the server dumped ("18.6")
    dumped_with: str = ""  # postgres: the pg_dump (or pg_dumpall) version that wrote it
    started: str = ""  # when taking it began (UTC, ISO 8601): kinds run side by side
    seconds: float = 0.0  # how long taking it took

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "key": self.key, "size": self.size,
                               "sha256": self.sha256, "version_id": self.version_id}
        if self.sha256_key is not None:
            doc["sha256_key"] = self.sha256_key
        if self.database is not None:
            doc["database"] = self.database
        if self.files:
            doc["files"] = {rel: {"sha256": f.sha256, "size": f.size}
                            for rel, f in sorted(self.files.items())}
        if self.snapshot is not None:
            doc["snapshot"] = self.snapshot
        if self.kind == "config":
            doc["paths"] = list(self.paths)
            doc["recipients"] = list(self.recipients)
        if self.encrypted_to:
            doc["encrypted_to"] = list(self.encrypted_to)
        if self.compressed:
            doc["compressed"] = self.compressed
        if self.roles:
            doc["roles"] = True
        if self.server_version:
            doc["server_version"] = self.server_version
        if self.dumped_with:
            doc["dumped_with"] = self.dumped_with
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

    def of_kind(self, kind: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.kind == kind]

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "tag": self.tag, "tag_object": self.tag_object,
                "tag_type": self.tag_type, "commit": self.commit, "tagger": self.tagger,
                "created": self.created, "timestamp": self.timestamp, "store": self.store,
                "tools": dict(self.tools), "artifacts": [a.to_json() for a in self.artifacts],
                "run": self.run, "taken_after_tag_s": self.taken_after_tag_s}


def key(tag: str) -> str:
    return f"manifests/{tag}.json"


class _Bad(Exception):
    pass


def _str(doc: dict[str, Any], name: str, optional: bool = False) -> Any:
    value = doc.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{name} is not a string")
    return value


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Bad(f"{name} is not a size")
    return value


def _sha(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise _Bad(f"{name} is not a SHA-256")
    return value


def _store_key(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{name} is not a key")
    try:
        check_key(value)
    except TaydashError:
        raise _Bad(f"{name} {value!r} is not a plain relative key") from None
    return value


def _artifact(doc: Any) -> Artifact:
    if not isinstance(doc, dict):
        raise _Bad("an artifact is not an object")
    files: dict[str, FileHash] = {}
    raw_files = doc.get("files") or {}
    if not isinstance(raw_files, dict):
        raise _Bad("files is not an object")
    for rel, f in raw_files.items():
        _store_key(rel, "a file name")
        if not isinstance(f, dict):
            raise _Bad(f"file {rel} is not an object")
        files[rel] = FileHash(_sha(f.get("sha256"), f"the hash of {rel}"), _int(f, "size"))
    sidecar = doc.get("sha256_key")
    return Artifact(
        kind=_str(doc, "kind"), key=_store_key(doc.get("key"), "key"), size=_int(doc, "size"),
        sha256=_sha(doc.get("sha256"), "sha256"),
        version_id=_str(doc, "version_id", True), database=_str(doc, "database", True),
        snapshot=_str(doc, "snapshot", True),
        sha256_key=_store_key(sidecar, "sha256_key") if sidecar is not None else None,
        files=files, paths=_strings(doc, "paths"), recipients=_strings(doc, "recipients"),
        encrypted_to=_strings(doc, "encrypted_to"),
        compressed=_compressed(doc), roles=doc.get("roles") is True,
        server_version=_str(doc, "server_version", True) or "",
        dumped_with=_str(doc, "dumped_with", True) or "", started=_str(doc, "started", True) or "",
        seconds=float(doc["seconds"]) if isinstance(doc.get("seconds"), (int, float)) else 0.0,
    )


def _compressed(doc: dict[str, Any]) -> str:
    value = doc.get("compressed") or ""
    if value not in ("", "zstd"):
        raise _Bad(f"compressed {value!r} is not a compression this version reads")
    return str(value)


def _strings(doc: dict[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"{name} is not a list of strings")
    return tuple(value)


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
            raise _Bad("artifacts is not a list")
        tools = doc.get("tools") or {}
        if not isinstance(tools, dict):
            raise _Bad("tools is not an object")
        return Manifest(
            tag=_str(doc, "tag"), tag_object=_str(doc, "tag_object"), commit=_str(doc, "commit"),
            artifacts=tuple(_artifact(a) for a in arts),
            tag_type=_str(doc, "tag_type", True) or "tag", tagger=_str(doc, "tagger", True) or "",
            created=_str(doc, "created", True) or "", timestamp=_str(doc, "timestamp", True) or "",
            store=_str(doc, "store", True) or "",
            tools={str(k): str(v) for k, v in tools.items()},
            format=doc.get("format", FORMAT) if isinstance(doc.get("format"), int) else FORMAT,
            run=_str(doc, "run", True) or "",
            taken_after_tag_s=_int(doc, "taken_after_tag_s") if doc.get("taken_after_tag_s")
            is not None else None,
        )
    except _Bad as exc:
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
