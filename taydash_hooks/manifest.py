"""Manifests: ``manifests/<tag>.json``, written last, never overwritten.

A backup without its manifest does not exist for list, verify or restore.
"""

from __future__ import annotations

import json
from typing import Any

from taydash_hooks.errors import refused
from taydash_hooks.store import Store

FORMAT = 1


def key(tag: str) -> str:
    return f"manifests/{tag}.json"


def load(store: Store, tag: str) -> dict[str, Any] | None:
    """The manifest of ``tag``, or None when there is none."""
    if not store.exists(key(tag)):
        return None
    with store.open(key(tag)) as fh:
        data = fh.read()
    try:
        doc = json.loads(data)
    except ValueError:
        raise refused(f"the manifest of {tag} in {store.url} is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise refused(f"the manifest of {tag} in {store.url} is not a JSON object.")
    return doc


def require(store: Store, tag: str) -> dict[str, Any]:
    """The manifest of ``tag``; exit 1 when there is none."""
    doc = load(store, tag)
    if doc is None:
        raise refused(f"no backup of {tag} in {store.url} (no manifest {key(tag)}).")
    return doc


def all_tags(store: Store) -> list[str]:
    """Tags that have a manifest."""
    return sorted(k[len("manifests/"):-len(".json")] for k in store.keys("manifests/")
                  if k.endswith(".json"))


def dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def artifacts(doc: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    items = doc.get("artifacts", [])
    return [a for a in items if isinstance(a, dict) and (kind is None or a.get("kind") == kind)]
