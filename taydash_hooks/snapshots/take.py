"""Taking the snapshots of one tag: PostgreSQL, VictoriaMetrics, config bundle, then the manifest.

The manifest is written last and never overwritten; a failure anywhere
leaves no manifest (and the artifacts of the failed attempt are removed).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone

from taydash_hooks import __version__, git
from taydash_hooks.config import KINDS, Config
from taydash_hooks.errors import refused, usage
from taydash_hooks.output import say
from taydash_hooks.snapshots import kinds, manifest
from taydash_hooks.snapshots.kinds.base import TakeJob, snapshot_timeout

__all__ = ["remove_artifact", "snapshot_timeout", "tag_facts", "take", "timestamp"]
from taydash_hooks.snapshots.location import open_store
from taydash_hooks.snapshots.lock import tag_lock
from taydash_hooks.snapshots.manifest import Artifact, Manifest
from taydash_hooks.store import Store


def timestamp(now: float | None = None) -> str:
    """UTC ``YYYYmmdd_HHMMSS`` (SPEC.md's TS)."""
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(time.time() if now is None else now))


def tag_facts(repo: git.Repo, tag: str) -> dict[str, str]:
    """Tag object id, commit and tagger of a local tag; exit 2 when it does not exist."""
    ref = f"refs/tags/{tag}"
    # for-each-ref takes patterns (`v*`) and prefixes (`v1` lists `v1/rc`): keep the exact ref only.
    res = git.git("for-each-ref", "--format=%(refname)%00%(objectname) %(objecttype)%00"
                  "%(taggername) %(taggeremail) %(taggerdate:iso-strict)", ref, cwd=repo.root)
    lines = [ln.split("\0") for ln in res.out.splitlines()]
    found = [parts for parts in lines if len(parts) == 3 and parts[0] == ref]
    if not found:
        raise usage(f"there is no tag {tag!r} in this repository (a TAG names exactly one tag).")
    _, head, tagger = found[0]
    oid, kind = head.split()
    commit = git.rev_parse(f"{oid}^{{commit}}", repo.root)
    if commit is None:
        raise usage(f"tag {tag} does not point at a commit.")
    return {"tag_object": oid, "tag_type": kind, "commit": commit, "tagger": tagger.strip()}


def _kinds(cfg: Config, only: list[str] | None) -> list[str]:
    assert cfg.snapshots is not None
    if only:
        unknown = [k for k in only if k not in KINDS]
        if unknown:
            raise usage(f"--only: unknown kind {unknown[0]!r} (known: {', '.join(KINDS)}).")
        missing = [k for k in only if getattr(cfg.snapshots, k) is None]
        if missing:
            raise usage(f"--only {missing[0]}: there is no [snapshots.{missing[0]}] table.")
        return only
    return list(cfg.snapshots.kinds)


def take(repo: git.Repo, cfg: Config, tag: str, only: list[str] | None = None,
         store: Store | None = None) -> Manifest:
    """Snapshot every configured kind for ``tag``; returns the manifest (existing or new)."""
    if cfg.snapshots is None:
        raise usage("No [snapshots] table in the configuration; nothing to snapshot.")
    names = _kinds(cfg, only)
    facts = tag_facts(repo, tag)
    store = store or open_store(repo, cfg)
    with tag_lock(repo.state_dir, tag):
        existing = manifest.load(store, tag)
        if existing is not None and existing.tag_object != facts["tag_object"]:
            raise refused(
                f"{store.url} holds a backup named {tag} of another tag object "
                f"({existing.tag_object[:12]}, this one is {facts['tag_object'][:12]}); "
                "a backup is never replaced: use a new tag name.")
        if existing is not None:
            say(f"{tag} already has a backup ({manifest.key(tag)} in {store.url}); nothing to do.")
            return existing
        if not names:
            raise usage("[snapshots] has no kinds configured (add [snapshots.postgres], "
                        "[snapshots.victoriametrics] or [snapshots.config]).")
        ts = timestamp()
        say(f"snapshot of {tag} ({', '.join(names)}) -> {store.url}")
        # We hold the tag's lock: partial uploads for this tag are from a dead attempt.
        for prefix in (f"db-backups/{tag}_", f"config-backups/{tag}_"):
            if store.clean_partial(prefix):
                say(f"removed leftovers of an interrupted snapshot under {prefix}")
        artifacts: list[Artifact] = []
        tools: dict[str, str] = {"taydash": __version__}
        job = TakeJob(cfg, store, tag, ts, snapshot_timeout())
        try:
            for name in names:
                kind = kinds.get(name)
                tools.update(kind.tool_versions(cfg))
                # Appended one by one: a later failure removes what is already stored.
                for art in kind.take(job):
                    artifacts.append(art)
            doc = Manifest(
                tag=tag, tag_object=facts["tag_object"], tag_type=facts["tag_type"],
                commit=facts["commit"], tagger=facts["tagger"],
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                timestamp=ts, store=store.url, tools=tools, artifacts=tuple(artifacts))
            written = store.put_bytes(manifest.key(tag), manifest.dump(doc))
        except BaseException:
            # Without a manifest these are not a backup; do not leave orphans behind.
            for art in artifacts:
                with contextlib.suppress(Exception, KeyboardInterrupt):
                    kinds.get(art.kind).remove(store, art)
            raise
        say(f"snapshot of {tag} done: {manifest.key(tag)} "
            f"({len(artifacts)} artifact(s), manifest sha256 {written.sha256[:12]})")
        return doc


def remove_artifact(store: Store, art: Artifact) -> None:
    """Delete one artifact of a backup that has (or will have) no manifest."""
    kinds.get(art.kind).remove(store, art)
