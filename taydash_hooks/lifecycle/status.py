"""What `health` and `metrics` report: one typed collection of every figure, as of now.

:func:`collect` builds a :class:`Report` from small collectors, one per section: the release
tags, the remote, the backups in the store (only manifests bound to this repository's tags
count), the repository itself, and the last background snapshot, verify and drill. The text
table, ``health --json`` (:meth:`Report.to_json`) and the metrics are all derived from it, so
a new figure is one field that mypy follows to every reader.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taydash_hooks import git
from taydash_hooks.config import Config, HealthConfig
from taydash_hooks.errors import TaydashError
from taydash_hooks.lifecycle.records import Activity, Outcome, last
from taydash_hooks.output import listing, plural
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.expected import Presence, expected
from taydash_hooks.snapshots.fields import timestamp
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.snapshots.triggers import STATUS_FILE
from taydash_hooks.tags.releases import release_tags

MIB = 1024 * 1024

Warn = Callable[[str], None]


def _days(seconds: float) -> float:
    return round(seconds / 86400, 1)


@dataclass(frozen=True)
class Releases:
    """The release tags: the newest one, and whether HEAD is released."""

    last_tag: str | None = None
    last_timestamp: float | None = None
    days_since: float | None = None
    head_tagged: bool = False
    tags: tuple[tuple[str, float], ...] = ()  # newest first


@dataclass(frozen=True)
class Remote:
    """What is not on the remote yet (None: the remote could not be asked)."""

    unpushed_commits: int | None = None
    tags_not_on_remote: list[str] | None = None


@dataclass(frozen=True)
class KindFigures:
    """The newest backup holding one kind."""

    tag: str
    timestamp: float | None
    size_bytes: int
    sizes_by_database: dict[str, int]
    duration_seconds: float
    parts: tuple[tuple[str, str, int], ...] = ()  # (artifact label, database, bytes)

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "timestamp": self.timestamp, "size_bytes": self.size_bytes,
                "sizes_by_database": self.sizes_by_database,
                "duration_seconds": self.duration_seconds}


@dataclass(frozen=True)
class Backups:
    """The store, as this repository's tags see it (None: no store configured or readable)."""

    days_since_snapshot: float | None = None
    tags_without_backup: list[str] | None = None
    partial_backups: list[str] | None = None
    pruned_tags: list[str] | None = None
    in_store: int | None = None
    newest_release_with_backup: str | None = None
    kinds: dict[str, KindFigures] = field(default_factory=dict)


@dataclass(frozen=True)
class Blob:
    oid: str
    size: int
    path: str


@dataclass(frozen=True)
class Repository:
    size_bytes: int = 0
    large_blobs: list[Blob] = field(default_factory=list)


@dataclass(frozen=True)
class Background:
    """The last background (tag-triggered) snapshot, as its job recorded it."""

    tag: str | None
    ok: bool
    message: str | None
    log: str | None
    finished: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    """Every health figure, and a ``warnings`` list of what is past its threshold."""

    time: float
    releases: Releases
    remote: Remote
    backups: Backups
    repository: Repository
    background: Background | None
    last: dict[Activity, Outcome | None]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        """``health --json``: a flat document (its keys are the command's contract)."""
        r, b = self.releases, self.backups
        doc: dict[str, Any] = {
            "warnings": self.warnings,
            "last_release_tag": r.last_tag,
            "days_since_release": r.days_since,
            "head_tagged": r.head_tagged,
            "unpushed_commits": self.remote.unpushed_commits,
            "tags_not_on_remote": self.remote.tags_not_on_remote,
            "time": self.time,
            "last_release_timestamp": r.last_timestamp,
            "days_since_snapshot": b.days_since_snapshot,
            "tags_without_backup": b.tags_without_backup,
            "partial_backups": b.partial_backups,
            "pruned_tags": b.pruned_tags,
            "backups_in_store": b.in_store,
            "newest_release_with_backup": b.newest_release_with_backup,
            "kinds": {k: v.to_json() for k, v in b.kinds.items()},
            "repo_size_bytes": self.repository.size_bytes,
            "large_blobs": [asdict(x) for x in self.repository.large_blobs],
            "last_background_snapshot": self.background.to_json() if self.background else None,
        }
        for activity in Activity:
            outcome = self.last.get(activity)
            doc[f"last_{activity.value}"] = asdict(outcome) if outcome else None
        return doc


def largest_blobs(root: Path, minimum: int, limit: int = 10) -> list[Blob]:
    """The biggest blobs reachable from any ref, over ``minimum`` bytes."""
    objects = git.git("rev-list", "--objects", "--all", cwd=root, timeout=600).stdout
    res = git.git("cat-file", "--batch-check=%(objecttype) %(objectname) %(objectsize) %(rest)",
                  input=objects, cwd=root, timeout=600)
    blobs: dict[str, Blob] = {}
    for line in res.out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == "blob" and int(parts[2]) > minimum:
            blobs.setdefault(parts[1], Blob(parts[1], int(parts[2]),
                                            parts[3] if len(parts) > 3 else ""))
    return sorted(blobs.values(), key=lambda b: -b.size)[:limit]


def _releases(repo: git.Repo, cfg: Config, h: HealthConfig, now: float, warn: Warn) -> Releases:
    tags = tuple(release_tags(repo, cfg))
    head = git.rev_parse("HEAD", repo.root)
    at_head = git.out("tag", "--points-at", "HEAD", cwd=repo.root).split() if head else []
    if not tags:
        warn("no release tag yet")
        return Releases(head_tagged=False)
    days = _days(now - tags[0][1])
    if days > h.max_days_since_release:
        warn(f"last release tag {tags[0][0]} is {days} days old")
    return Releases(tags[0][0], tags[0][1], days, bool(set(at_head) & {t for t, _ in tags}),
                    tags)


def _remote(repo: git.Repo, releases: Releases, h: HealthConfig, warn: Warn) -> Remote:
    from taydash_hooks.remote import ls_remote, upstream

    root = repo.root
    unpushed = None
    try:
        up = upstream(root)
        theirs = git.rev_parse(f"refs/remotes/{up.remote}/{up.branch}", root)
        rng = [f"{theirs}..HEAD"] if theirs else ["HEAD"]
        unpushed = int(git.out("rev-list", "--count", *rng, cwd=root) or 0)
        if unpushed > h.max_unpushed_commits:
            warn(f"{plural(unpushed, 'commit')} on {up.branch} "
                 f"{'is' if unpushed == 1 else 'are'} not on {up.remote}")
        remote_tags = set(ls_remote(root, up.remote, "refs/tags/*"))
        missing = [t for t, _ in releases.tags if f"refs/tags/{t}" not in remote_tags]
        if missing:
            warn(f"{plural(len(missing), 'release tag')} not on {up.remote}: {listing(missing)}")
        return Remote(unpushed, missing)
    except TaydashError as exc:
        warn(exc.message)
        return Remote(unpushed, None)


def _backups(repo: git.Repo, cfg: Config, releases: Releases, h: HealthConfig, now: float,
             warn: Warn) -> Backups:
    if cfg.snapshots is None:
        return Backups()
    from taydash_hooks.snapshots.binding import binding_problem
    from taydash_hooks.snapshots.location import open_store
    from taydash_hooks.snapshots.removals import pruned as removed

    try:
        store = open_store(repo, cfg)
        docs = {t: manifest.load(store, t) for t in manifest.all_tags(store)}
        targets = git.tag_targets(repo.root)  # every tag in one git call, not two per backup
        # A manifest that does not belong to its tag (copied, or the tag re-created)
        # is no backup of it.
        bound: dict[str, Manifest] = {}
        for t, d in docs.items():
            problem = binding_problem(repo, d, t, targets) if d is not None else "no manifest"
            if problem is None and d is not None:
                bound[t] = d
            elif d is not None and t in targets:
                warn(f"the backup of {t} does not belong to it: {problem}")
        pruned, problems = removed(repo, cfg, store)
        for problem in problems:
            warn(problem)
    except TaydashError as exc:
        warn(exc.message)
        return Backups()
    tags = releases.tags
    # A backup retention removed on purpose is "pruned", not missing (snapshots/expected).
    presence = expected([t for t, _ in tags], set(bound), pruned)
    without = [e.tag for e in presence if e.presence is Presence.MISSING]
    for e in presence:
        if e.unbelieved_record:
            warn(f"a retention record says the backup of {e.tag} was pruned, but no newer "
                 "release has a backup (retention never removes the newest): not believed")
    partial = sorted(t for t, d in bound.items() if d.partial)
    if partial:
        warn(f"{plural(len(partial), 'partial backup')} (taken with --only): {listing(partial)}")
    # `created` is store content: a value that is no time is said, never a crash.
    stamps = {t: timestamp(d.created) for t, d in bound.items()}
    unreadable = sorted(t for t, s in stamps.items() if s is None and bound[t].created)
    for t in unreadable:
        warn(f"the backup of {t} has no readable creation time ({bound[t].created[:40]!r})")
    newest = max((s for s in stamps.values() if s is not None), default=None)
    days = None
    if newest is not None:
        days = _days(now - newest)
        if days > h.max_days_since_snapshot:
            warn(f"last snapshot is {days} days old")
    elif not unreadable:
        warn("no snapshot yet")
    if without:
        warn(f"{plural(len(without), 'release tag')} without a backup: {listing(without)}")
    return Backups(days, without, partial,
                   [e.tag for e in presence if e.presence is Presence.PRUNED], len(bound),
                   next((t for t, _ in tags if t in bound), None), newest_by_kind(bound.values()))


def _repository(repo: git.Repo, h: HealthConfig, warn: Warn) -> Repository:
    counts = dict(line.split(": ", 1) for line in
                  git.out("count-objects", "-v", cwd=repo.root).splitlines() if ": " in line)
    size = (int(counts.get("size", 0)) + int(counts.get("size-pack", 0))) * 1024
    blobs = largest_blobs(repo.root, int(h.large_blob_mib * MIB))
    if blobs:
        warn(f"{plural(len(blobs), 'blob')} over {h.large_blob_mib:g} MiB in the history")
    return Repository(size, blobs)


def _background(repo: git.Repo, warn: Warn) -> Background | None:
    from taydash_hooks.statefiles import read_private

    try:
        doc = json.loads(read_private(repo.state_dir / STATUS_FILE))
        if not isinstance(doc, dict):
            return None
        bg = Background(doc.get("tag"), bool(doc.get("ok")), doc.get("message"), doc.get("log"),
                        doc.get("finished"))
    except (OSError, ValueError):
        return None
    if not bg.ok:
        warn(f"the last background snapshot failed: {bg.message}")
    return bg


def _activities(repo: git.Repo, warn: Warn) -> dict[Activity, Outcome | None]:
    outcomes = {activity: last(repo, activity) for activity in Activity}
    for activity, outcome in outcomes.items():
        # A failed drill or verify is the strongest sign a backup will not come back.
        if outcome is not None and not outcome.ok:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(outcome.finished))
            warn(f"the last {activity.value} FAILED ({when}, {outcome.failed} of "
                 f"{outcome.checked} failed)")
    return outcomes


def collect(repo: git.Repo, cfg: Config, now: float | None = None) -> Report:
    """Every health figure: the one collection behind ``health`` (text and --json) and
    ``metrics``, so they never disagree."""
    h = cfg.health or HealthConfig()
    now = time.time() if now is None else now
    warnings: list[str] = []
    releases = _releases(repo, cfg, h, now, warnings.append)
    remote = _remote(repo, releases, h, warnings.append)
    backups = _backups(repo, cfg, releases, h, now, warnings.append)
    repository = _repository(repo, h, warnings.append)
    background = _background(repo, warnings.append)
    activities = _activities(repo, warnings.append)
    return Report(now, releases, remote, backups, repository, background, activities, warnings)


def newest_by_kind(backups: Iterable[Manifest]) -> dict[str, KindFigures]:
    """Per kind, its newest backup: tag, when it was taken, its size (per database where the
    kind has databases) and how long taking it took (first start to last end: the artifacts
    of a kind may be taken side by side)."""
    from taydash_hooks.snapshots.kinds import get

    found: dict[str, KindFigures] = {}
    for doc in sorted(backups, key=lambda d: timestamp(d.created) or 0.0):
        for kind in sorted({a.kind for a in doc.artifacts}):
            arts = doc.of_kind(kind)
            spans = [(s, s + a.seconds) for a in arts if (s := timestamp(a.started)) is not None]
            sizes: dict[str, int] = {}
            parts: dict[tuple[str, str], int] = {}
            for a in arts:
                name = get(kind).database(a)
                sizes[name] = sizes.get(name, 0) + a.size
                part = (get(kind).label(a), name)
                parts[part] = parts.get(part, 0) + a.size
            found[kind] = KindFigures(
                doc.tag, timestamp(doc.created), sum(a.size for a in arts), sizes,
                round(max(e for _, e in spans) - min(s for s, _ in spans), 3) if spans
                else round(sum(a.seconds for a in arts), 3),
                tuple((label, db, n) for (label, db), n in sorted(parts.items())))
    return found
