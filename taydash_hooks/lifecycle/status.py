"""What `health` and `metrics` report: one collection of every figure, as of now.

Release tags and their backups (only manifests bound to this repository's tags count),
the newest backup of each kind, pruned and partial backups, unpushed commits and tags,
repository size and large blobs, the last background snapshot, verify and drill.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from taydash_hooks import git
from taydash_hooks.config import Config, HealthConfig
from taydash_hooks.errors import TaydashError
from taydash_hooks.lifecycle.records import Activity, last
from taydash_hooks.output import listing, plural
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.snapshots.triggers import STATUS_FILE
from taydash_hooks.tags.releases import release_tags

MIB = 1024 * 1024


def _days(seconds: float) -> float:
    return round(seconds / 86400, 1)


def largest_blobs(root: Path, minimum: int, limit: int = 10) -> list[dict[str, Any]]:
    """The biggest blobs reachable from any ref, over ``minimum`` bytes."""
    objects = git.git("rev-list", "--objects", "--all", cwd=root, timeout=600).stdout
    res = git.git("cat-file", "--batch-check=%(objecttype) %(objectname) %(objectsize) %(rest)",
                  input=objects, cwd=root, timeout=600)
    blobs: dict[str, dict[str, Any]] = {}
    for line in res.out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == "blob" and int(parts[2]) > minimum:
            blobs.setdefault(parts[1], {"oid": parts[1], "size": int(parts[2]),
                                        "path": parts[3] if len(parts) > 3 else ""})
    return sorted(blobs.values(), key=lambda b: -b["size"])[:limit]


def collect(repo: git.Repo, cfg: Config, now: float | None = None) -> dict[str, Any]:
    """Every health figure, with a ``warnings`` list of what is past its threshold: the one
    collection behind ``health`` (text and --json) and ``metrics``, so they never disagree."""
    from taydash_hooks.remote import upstream

    h = cfg.health or HealthConfig()
    now = time.time() if now is None else now
    root = repo.root
    doc: dict[str, Any] = {"warnings": []}
    warn = doc["warnings"].append
    tags = release_tags(repo, cfg)
    doc["last_release_tag"] = tags[0][0] if tags else None
    doc["days_since_release"] = _days(now - tags[0][1]) if tags else None
    if not tags:
        warn("no release tag yet")
    elif doc["days_since_release"] > h.max_days_since_release:
        warn(f"last release tag {tags[0][0]} is {doc['days_since_release']} days old")
    head = git.rev_parse("HEAD", root)
    at_head = git.out("tag", "--points-at", "HEAD", cwd=root).split() if head else []
    doc["head_tagged"] = bool(set(at_head) & {t for t, _ in tags})
    doc["unpushed_commits"] = None
    try:
        up = upstream(root)
        theirs = git.rev_parse(f"refs/remotes/{up.remote}/{up.branch}", root)
        rng = [f"{theirs}..HEAD"] if theirs else ["HEAD"]
        doc["unpushed_commits"] = int(git.out("rev-list", "--count", *rng, cwd=root) or 0)
        if doc["unpushed_commits"] > h.max_unpushed_commits:
            warn(f"{plural(doc['unpushed_commits'], 'commit')} on {up.branch} "
                 f"{'is' if doc['unpushed_commits'] == 1 else 'are'} not on {up.remote}")
        from taydash_hooks.remote import ls_remote

        remote_tags = set(ls_remote(root, up.remote, "refs/tags/*"))
        doc["tags_not_on_remote"] = [t for t, _ in tags if f"refs/tags/{t}" not in remote_tags]
        if doc["tags_not_on_remote"]:
            warn(f"{plural(len(doc['tags_not_on_remote']), 'release tag')} not on {up.remote}: "
                 f"{listing(doc['tags_not_on_remote'])}")
    except TaydashError as exc:
        doc["tags_not_on_remote"] = None
        warn(exc.message)
    doc["time"] = now
    doc["last_release_timestamp"] = tags[0][1] if tags else None
    doc["days_since_snapshot"] = None
    doc["tags_without_backup"] = None
    doc["partial_backups"] = None
    doc["pruned_tags"] = None
    doc["backups_in_store"] = None
    doc["newest_release_with_backup"] = None
    doc["kinds"] = {}
    if cfg.snapshots is not None:
        from taydash_hooks.snapshots.location import open_store

        try:
            store = open_store(repo, cfg)
            from taydash_hooks.snapshots.binding import binding_problem

            docs = {t: manifest.load(store, t) for t in manifest.all_tags(store)}
            # A manifest that does not belong to its tag (copied, or the tag re-created)
            # is no backup of it.
            bound = {}
            for t, d in docs.items():
                problem = binding_problem(repo, d, t) if d is not None else "no manifest"
                if problem is None and d is not None:
                    bound[t] = d
                elif d is not None and git.rev_parse(f"refs/tags/{t}", root) is not None:
                    warn(f"the backup of {t} does not belong to it: {problem}")
            from taydash_hooks.snapshots.retention import removed_tags

            pruned = removed_tags(store)
            # A backup retention removed on purpose is "pruned", not missing.
            doc["pruned_tags"] = [t for t, _ in tags if t not in bound and t in pruned]
            doc["tags_without_backup"] = [t for t, _ in tags if t not in bound and t not in pruned]
            doc["partial_backups"] = sorted(t for t, d in bound.items() if d.partial)
            doc["backups_in_store"] = len(bound)
            doc["newest_release_with_backup"] = next((t for t, _ in tags if t in bound), None)
            doc["kinds"] = newest_by_kind(bound.values())
            if doc["partial_backups"]:
                warn(f"{plural(len(doc['partial_backups']), 'partial backup')} (taken with "
                     f"--only): {listing(doc['partial_backups'])}")
            # `created` is store content: a value that is no time is said, never a crash.
            stamps = {t: timestamp(d.created) for t, d in bound.items()}
            unreadable = sorted(t for t, s in stamps.items() if s is None and bound[t].created)
            for t in unreadable:
                warn(f"the backup of {t} has no readable creation time "
                     f"({bound[t].created[:40]!r})")
            newest = max((s for s in stamps.values() if s is not None), default=None)
            if newest is not None:
                doc["days_since_snapshot"] = _days(now - newest)
                if doc["days_since_snapshot"] > h.max_days_since_snapshot:
                    warn(f"last snapshot is {doc['days_since_snapshot']} days old")
            elif not unreadable:
                warn("no snapshot yet")
            if doc["tags_without_backup"]:
                missing = doc["tags_without_backup"]
                warn(f"{plural(len(missing), 'release tag')} without a backup: {listing(missing)}")
        except TaydashError as exc:
            warn(exc.message)
    counts = dict(line.split(": ", 1) for line in
                  git.out("count-objects", "-v", cwd=root).splitlines() if ": " in line)
    doc["repo_size_bytes"] = (int(counts.get("size", 0)) + int(counts.get("size-pack", 0))) * 1024
    doc["large_blobs"] = largest_blobs(root, int(h.large_blob_mib * MIB))
    if doc["large_blobs"]:
        warn(f"{plural(len(doc['large_blobs']), 'blob')} over {h.large_blob_mib:g} MiB in the "
             "history")
    status = repo.state_dir / STATUS_FILE
    try:
        from taydash_hooks.statefiles import read_private

        doc["last_background_snapshot"] = json.loads(read_private(status))
        if not doc["last_background_snapshot"].get("ok"):
            warn(f"the last background snapshot failed: {doc['last_background_snapshot'].get('message')}")
    except (OSError, ValueError):
        doc["last_background_snapshot"] = None
    for activity in Activity:
        outcome = last(repo, activity)
        doc[f"last_{activity.value}"] = asdict(outcome) if outcome else None
    return doc


def timestamp(iso: object) -> float | None:
    """UNIX time of an ISO 8601 text from a manifest or a status file (``Z`` and no zone both
    mean UTC); None when it is empty or not one: store contents are not trusted to be."""
    from datetime import datetime, timezone

    if not isinstance(iso, str) or not iso:
        return None
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def newest_by_kind(backups: Iterable[Manifest]) -> dict[str, dict[str, Any]]:
    """Per kind, its newest backup: tag, when it was taken, its size (per database where the
    kind has databases) and how long taking it took (first start to last end: the artifacts
    of a kind may be taken side by side)."""
    from taydash_hooks.snapshots.kinds import get

    found: dict[str, dict[str, Any]] = {}
    for doc in sorted(backups, key=lambda d: timestamp(d.created) or 0.0):
        for kind in sorted({a.kind for a in doc.artifacts}):
            arts = doc.of_kind(kind)
            spans = [(s, s + a.seconds) for a in arts if (s := timestamp(a.started)) is not None]
            sizes: dict[str, int] = {}
            for a in arts:
                name = get(kind).database(a)
                sizes[name] = sizes.get(name, 0) + a.size
            found[kind] = {
                "tag": doc.tag, "timestamp": timestamp(doc.created),
                "size_bytes": sum(a.size for a in arts), "sizes_by_database": sizes,
                "duration_seconds": (round(max(e for _, e in spans) - min(s for s, _ in spans), 3)
                                     if spans else round(sum(a.seconds for a in arts), 3)),
            }
    return found
