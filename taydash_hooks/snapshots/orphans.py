"""Store objects nothing accounts for: reported, never deleted by guesswork.

An object is accounted for when a manifest that parses lists it (an artifact, its sidecar, an
object under a VictoriaMetrics prefix, the manifest and its signature), when a tombstone
lists it (a delete that will be finished), or when it carries the run id of a journal of this
clone (a run in progress, or one the next run of its tag cleans). Everything else is an orphan:
a foreign writer's, a run of another clone that died, or a manifest that does not parse.
"""

from __future__ import annotations

import json

from taydash_hooks import git
from taydash_hooks.errors import TaydashError
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.snapshots.retention import TRASH
from taydash_hooks.statefiles import read_private
from taydash_hooks.store import Store


def _claims(doc: Manifest) -> tuple[set[str], list[str]]:
    """The keys and key prefixes ``doc`` accounts for."""
    keys = {manifest.key(doc.tag), f"{manifest.key(doc.tag)}.sig", f"{manifest.key(doc.tag)}.sig.next",
            f"manifests/{doc.tag}.SHA256SUMS", f"manifests/{doc.tag}.SHA256SUMS.sig",
            f"manifests/{doc.tag}.SHA256SUMS.sig.next"}
    prefixes = []
    for art in doc.artifacts:
        if art.key.endswith("/"):
            prefixes.append(art.key)
        else:
            keys.add(art.key)
        if art.sha256_key:
            keys.add(art.sha256_key)
    return keys, prefixes


def _journal_runs(repo: git.Repo) -> list[str]:
    """``<tag>_<stamp>`` of every run this clone has a journal of."""
    runs = []
    for path in sorted((repo.state_dir / "runs").glob("*.json")):
        try:
            doc = json.loads(read_private(path))
            runs.append(f"{doc['tag']}_{doc['stamp']}")
        except (OSError, ValueError, KeyError, TypeError, TaydashError):
            continue
    return runs


def orphans(repo: git.Repo, store: Store) -> list[tuple[str, str]]:
    """Every unaccounted object, with a short why, sorted by key."""
    keys: set[str] = set()
    prefixes: list[str] = []
    bad: dict[str, str] = {}
    for key in store.keys("manifests/"):
        if not key.endswith(".json"):
            continue
        try:
            doc = manifest.require(store, key[len("manifests/"):-len(".json")])
        except TaydashError as exc:
            bad[key] = f"a manifest that does not parse: {exc.message[:80]}"
            continue
        from taydash_hooks.snapshots.binding import binding_problem

        tag = key[len("manifests/"):-len(".json")]
        problem = binding_problem(repo, doc, tag)
        more, under = _claims(doc)
        if problem:
            # Anyone can write a manifest for a tag this repository does not have, listing
            # what they want hidden: only a manifest bound to its tag accounts for anything.
            why = f"listed only by the manifest of {tag}, which is no backup here: {problem}"
            for k in more | {k for p in under for k in store.keys(p)}:
                bad.setdefault(k, why[:200])
            continue
        keys |= more
        prefixes += under
        keys |= _chunks_named(store, doc)
    for key in store.keys(TRASH):
        with store.open(key) as fh:
            data = fh.read(manifest.MAX_BYTES + 1)
        try:
            more, under = _claims(manifest.parse(data, key))
        except TaydashError:
            bad[key] = "a tombstone that does not parse"
            continue
        keys |= more | {key}
        prefixes += under
    from taydash_hooks.snapshots.removals import PREFIX as RECORDS

    prefixes.append(RECORDS)  # what retention removed, on purpose
    from taydash_hooks.snapshots import chunks

    prefixes.append(chunks.LOCKS)  # a running snapshot's or prune's, stale ones included
    runs = [f"{folder}{run}" for run in _journal_runs(repo) for folder in manifest.RUN_FOLDERS]
    found = []
    for key in store.keys(""):
        if key in keys or any(key.startswith(p) for p in prefixes):
            continue
        if any(key.startswith(r) and key[len(r):len(r) + 1] in ("", "_", ".", "/") for r in runs):
            continue
        why = ("a chunk no backup's list names (a prune removes it after the grace period)"
               if key.startswith("chunks/") else
               "no manifest, tombstone or run of this clone lists it")
        found.append((key, bad.get(key, why)))
    return sorted(found)


def _chunks_named(store: Store, doc: Manifest) -> set[str]:
    """The chunks the chunk lists of ``doc`` name (deduplicated dumps)."""
    from taydash_hooks.snapshots import chunks

    named: set[str] = set()
    for art in doc.artifacts:
        if art.key.endswith(".chunks") and store.exists(art.key):
            with store.open(art.key) as fh:
                try:
                    named |= {c.key for c in chunks.parse(fh.read(chunks.MAX_LIST + 1), art.key)}
                except TaydashError:
                    continue  # its chunks show as orphans; verify says why
    return named
