"""Retention: which backups a policy keeps, and deleting a backup so that a crash cannot lie.

The rules are restic's ``forget``: keep the N newest (``keep_last``), the newest of each of the
N latest months that have one (``keep_monthly``), everything within a duration of the newest
backup (``keep_within``). Whatever the rules say, the backup of the newest release tag (the
highest version that has a backup) is kept.

Deleting a backup: a tombstone (``trash/<tag>.json``, a copy of the manifest) is written, the
manifest removed (from then on the backup does not exist for list, verify or restore), then
the artifacts, then the tombstone. Interrupted anywhere, the next prune or delete finds the
tombstone and finishes. A backup any of whose objects is under Object Lock is left whole.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from taydash_hooks.errors import TaydashError
from taydash_hooks.snapshots import kinds, manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.store import Store
from taydash_hooks.store.base import KeyTaken
from taydash_hooks.tags.naming import version_key

TRASH = "trash/"
_UNITS = {"y": 365 * 24, "m": 30 * 24, "w": 7 * 24, "d": 24, "h": 1}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``1y6m`` as a timedelta (months of 30 days, years of 365)."""
    hours = sum(int(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)([ymwdh])", text))
    return timedelta(hours=hours)


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_monthly: int = 0
    keep_within: str = ""

    @property
    def empty(self) -> bool:
        return not (self.keep_last or self.keep_monthly or self.keep_within)


@dataclass
class Decision:
    """One backup and why it stays (no reasons: it goes)."""

    doc: Manifest
    created: datetime
    reasons: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def _created(doc: Manifest) -> datetime:
    try:
        when = datetime.fromisoformat(doc.created)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def plan(docs: list[Manifest], policy: Policy) -> list[Decision]:
    """A decision per backup, newest first, each with the rules that keep it."""
    decisions = sorted((Decision(d, _created(d)) for d in docs), key=lambda x: x.created,
                       reverse=True)
    if not decisions:
        return []
    for i, d in enumerate(decisions):
        if i < policy.keep_last:
            d.reasons.append(f"last {policy.keep_last}")
    months: list[tuple[int, int]] = []
    for d in decisions:
        month = (d.created.year, d.created.month)
        if policy.keep_monthly and month not in months and len(months) < policy.keep_monthly:
            months.append(month)
            d.reasons.append(f"monthly ({d.created:%Y-%m})")
    if policy.keep_within:
        newest = decisions[0].created
        span = parse_duration(policy.keep_within)
        for d in decisions:
            if newest - d.created <= span:
                d.reasons.append(f"within {policy.keep_within}")
    newest_release = max(decisions, key=lambda d: version_key(d.doc.tag))
    newest_release.reasons.append("newest release")
    return decisions


def _objects(store: Store, doc: Manifest) -> list[tuple[str, str | None]]:
    """Every stored object of a backup (key, recorded version), the manifest included."""
    found: list[tuple[str, str | None]] = [(manifest.key(doc.tag), None)]
    for art in doc.artifacts:
        if art.key.endswith("/"):
            found += [(k, None) for k in store.keys(art.key)]
        else:
            found.append((art.key, art.version_id))
        if art.sha256_key:
            found.append((art.sha256_key, None))
    return found


def locked_until(store: Store, doc: Manifest) -> datetime | None:
    """The latest Object Lock date among the backup's objects, or None when none is locked."""
    dates = [d for key, version in _objects(store, doc)
             if (d := store.retained_until(key, version)) is not None]
    return max(dates) if dates else None


def delete(store: Store, doc: Manifest) -> None:
    """Remove one backup: tombstone, manifest, artifacts, tombstone (safe to rerun)."""
    tomb = f"{TRASH}{doc.tag}.json"
    with contextlib.suppress(KeyTaken):  # a rerun finds it there already
        store.put_bytes(tomb, manifest.dump(doc))
    store.delete(manifest.key(doc.tag))  # every version: the name is this backup's alone
    _remove_artifacts(store, doc)
    store.delete(tomb)


def _remove_artifacts(store: Store, doc: Manifest) -> None:
    for art in doc.artifacts:
        kinds.remove(store, art)


def finish_interrupted(store: Store) -> list[str]:
    """Complete deletions an interrupted run left (their tombstones); the tags finished."""
    done = []
    for key in store.keys(TRASH):
        if not key.endswith(".json"):
            continue
        with store.open(key) as fh:
            data = fh.read(manifest.MAX_BYTES + 1)
        try:
            doc = manifest.parse(data, f"the tombstone {key}")
        except TaydashError:
            continue  # not ours to judge: left for a person
        if store.exists(manifest.key(doc.tag)):
            store.delete(manifest.key(doc.tag))
        _remove_artifacts(store, doc)
        store.delete(key)
        done.append(doc.tag)
    return done
