"""Retention: which backups a policy keeps, and deleting a backup so that a crash cannot lie.

The rules are restic's ``forget``: keep the N newest (``keep_last``), the newest of each of the
N latest months that have one (``keep_monthly``), everything within a duration of the newest
backup (``keep_within``). Whatever the rules say, the backup of the newest release (the highest
version among the tags whose names pass the naming policy, never a name outside it) is kept.
Only manifests that pass the binding and signature checks are judged at all: the store is
someone else's, and a forged manifest must neither count as kept nor be deleted.

Deleting a backup: a tombstone (``trash/<tag>.json``, a copy of the manifest) is written, the
manifest removed (from then on the backup does not exist for list, verify or restore), then
the artifacts, then the tombstone. Interrupted anywhere, the next prune or delete finds the
tombstone and finishes, for the run it names only, only while no live manifest has that run,
and never touching a key outside that run (a tombstone is store content too: a planted one must
not delete the newest release). A backup any of whose objects is under Object Lock is left
whole.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from taydash_hooks.errors import TaydashError
from taydash_hooks.snapshots import kinds, manifest, removals
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.store import Store
from taydash_hooks.store.base import KeyTaken
from taydash_hooks.tags.naming import naming_problem, version_key

if TYPE_CHECKING:
    from taydash_hooks.snapshots.signing import Signer

TRASH = "trash/"
_UNITS = {"y": 365 * 24, "m": 30 * 24, "w": 7 * 24, "d": 24, "h": 1}


MAX_HOURS = 1000 * 365 * 24  # a thousand years: past it a duration is a typo


def parse_duration(text: str, where: str = "--keep-within") -> timedelta:
    """``30d``, ``12h``, ``1y6m`` as a timedelta (months of 30 days, years of 365); exit 2
    naming ``where`` past a thousand years."""
    hours = sum(int(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)([ymwdh])", text))
    if hours > MAX_HOURS:
        from taydash_hooks.errors import usage

        raise usage(f"{where} {text!r} is longer than a thousand years; give a duration like "
                    "30d, 12h or 1y6m.")
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


def plan(docs: list[Manifest], policy: Policy, naming: str = "convention") -> list[Decision]:
    """A decision per backup, newest first, each with the rules that keep it."""
    # A manifest says its time to the second: two backups of one second (a script that tags
    # twice) are told apart by their versions, so "last 1" keeps v0.10.0 over v0.9.0 and not
    # whichever the store happened to list first.
    decisions = sorted((Decision(d, _created(d)) for d in docs),
                       key=lambda x: (x.created, version_key(x.doc.tag)), reverse=True)
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
    release = newest_release([d.doc for d in decisions], naming)
    for d in decisions:
        if d.doc.tag == release:
            d.reasons.append("newest release")
    return decisions


def newest_release(docs: list[Manifest], naming: str = "convention") -> str | None:
    """The highest version among backups whose tag names pass ``naming`` (``vNext`` or a
    ``checkpoint-1`` never displaces a release), or None when none does."""
    # A partial backup is never "the newest release": it may be deleted so a full one is taken.
    releases = [d.tag for d in docs if naming_problem(d.tag, naming) is None and not d.partial]
    return max(releases, key=version_key) if releases else None


def _objects(store: Store, doc: Manifest) -> list[tuple[str, str | None]]:
    """Every stored object of a backup (key, recorded version), the manifest included."""
    found: list[tuple[str, str | None]] = [(manifest.key(doc.tag), None),
                                           (f"{manifest.key(doc.tag)}.sig", None)]
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


def delete(store: Store, doc: Manifest, by: Signer | None = None) -> None:
    """Remove one backup: tombstone, manifest, artifacts, the retention record (signed by
    ``by``, :mod:`.removals`), tombstone (safe to rerun)."""
    tomb = f"{TRASH}{doc.tag}.json"
    data = manifest.dump(doc)
    if store.exists(tomb):
        with store.open(tomb) as fh:
            if fh.read(manifest.MAX_BYTES + 1) != data:
                store.delete(tomb)  # not this backup's (planted, or another run's): ours instead
    with contextlib.suppress(KeyTaken):  # a rerun finds it there already
        store.put_bytes(tomb, data)
    store.delete(manifest.key(doc.tag))  # every version: the name is this backup's alone
    from taydash_hooks.snapshots import sums

    for sig in (f"{manifest.key(doc.tag)}.sig", f"{manifest.key(doc.tag)}.sig.next",
                sums.key(doc.tag), sums.sig_key(doc.tag), f"{sums.sig_key(doc.tag)}.next"):
        if store.exists(sig):  # a signature without its manifest is void
            store.delete(sig)
    _remove_artifacts(store, doc)
    removals.record(store, doc, by)
    store.delete(tomb)


def _remove_artifacts(store: Store, doc: Manifest) -> None:
    for art in doc.artifacts:
        kinds.remove(store, art)


@dataclass(frozen=True)
class Tombstone:
    """What one ``trash/`` object turned out to be, and what was done about it."""

    key: str
    tag: str
    finished: bool
    why: str = ""  # when nothing of a backup was removed: why


def finish_interrupted(store: Store, by: Signer | None = None) -> list[Tombstone]:
    """Complete the deletions interrupted runs left (their tombstones), each only for the run
    it names; a tombstone that is not believable is reported and left for a person."""
    from taydash_hooks.snapshots.binding import artifacts_problem

    found = []
    for key in store.keys(TRASH):
        if not key.endswith(".json"):
            continue
        with store.open(key) as fh:
            data = fh.read(manifest.MAX_BYTES + 1)
        try:
            doc = manifest.parse(data, f"the tombstone {key}")
        except TaydashError as exc:
            found.append(Tombstone(key, "?", False, exc.message))
            continue
        why = None
        if key != f"{TRASH}{doc.tag}.json":
            why = f"it is named {key} but holds the manifest of {doc.tag}"
        elif not doc.run:
            why = "it names no run"
        else:
            why = artifacts_problem(doc)
        live = manifest.load(store, doc.tag) if why is None else None
        if why is None and live is not None and live.run == doc.run:
            # Its manifest is live: the deletion never took effect (interrupted before the
            # manifest went, or a planted copy). The backup stays; only the tombstone goes.
            store.delete(key)
            found.append(Tombstone(key, doc.tag, False, f"the backup of {doc.tag} (run "
                                   f"{doc.run}) is live; it was left as it is"))
            continue
        if why is not None:
            found.append(Tombstone(key, doc.tag, False, why))
            continue
        # A live manifest of another run (the tag was snapshotted again) stays as it is.
        _remove_artifacts(store, doc)
        removals.record(store, doc, by)
        store.delete(key)
        found.append(Tombstone(key, doc.tag, True))
    return found
