"""Taking the snapshots of one tag: PostgreSQL, VictoriaMetrics, config bundle, then the manifest.

The manifest is written last and never overwritten; a failure anywhere
leaves no manifest (and the artifacts of the failed attempt are removed).
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime, timezone
from typing import Any

from taydash_hooks import __version__, git, manifest
from taydash_hooks.config import KINDS, Config
from taydash_hooks.errors import TaydashError, refused, usage
from taydash_hooks.output import say
from taydash_hooks.snapshot_lock import tag_lock
from taydash_hooks.store import Store, open_store

DEFAULT_TIMEOUT = 6 * 3600.0


def snapshot_timeout() -> float:
    """Seconds any one snapshot tool (pg_dump, vmbackup, gpg) may run: TAYDASH_SNAPSHOT_TIMEOUT."""
    try:
        return float(os.environ.get("TAYDASH_SNAPSHOT_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def timestamp(now: float | None = None) -> str:
    """UTC ``YYYYmmdd_HHMMSS`` (SPEC.md's TS)."""
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(time.time() if now is None else now))


def tag_facts(repo: git.Repo, tag: str) -> dict[str, str]:
    """Tag object id, commit and tagger of a local tag; exit 2 when it does not exist."""
    ref = f"refs/tags/{tag}"
    res = git.git("for-each-ref", "--format=%(objectname) %(objecttype)%00%(taggername) "
                  "%(taggeremail) %(taggerdate:iso-strict)", ref, cwd=repo.root)
    line = res.out.strip()
    if not line:
        raise usage(f"there is no tag {tag!r} in this repository.")
    head, _, tagger = line.partition("\0")
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
         store: Store | None = None) -> dict[str, Any]:
    """Snapshot every configured kind for ``tag``; returns the manifest (existing or new)."""
    if cfg.snapshots is None:
        raise usage("No [snapshots] table in the configuration; nothing to snapshot.")
    kinds = _kinds(cfg, only)
    facts = tag_facts(repo, tag)
    store = store or open_store(repo, cfg)
    with tag_lock(repo.state_dir, tag):
        existing = manifest.load(store, tag)
        if existing is not None and existing.get("tag_object") != facts["tag_object"]:
            raise refused(
                f"{store.url} holds a backup named {tag} of another tag object "
                f"({str(existing.get('tag_object'))[:12]}, this one is {facts['tag_object'][:12]}); "
                "a backup is never replaced: use a new tag name.")
        if existing is not None:
            say(f"taydash: {tag} already has a backup ({manifest.key(tag)} in {store.url}); "
                "nothing to do.")
            return existing
        if not kinds:
            raise usage("[snapshots] has no kinds configured (add [snapshots.postgres], "
                        "[snapshots.victoriametrics] or [snapshots.config]).")
        ts = timestamp()
        say(f"taydash: snapshot of {tag} ({', '.join(kinds)}) -> {store.url}")
        # We hold the tag's lock: partial uploads for this tag are from a dead attempt.
        for prefix in (f"db-backups/{tag}_", f"config-backups/{tag}_"):
            if store.clean_partial(prefix):
                say(f"taydash: removed leftovers of an interrupted snapshot under {prefix}")
        artifacts: list[dict[str, Any]] = []
        tools: dict[str, str] = {"taydash": __version__}
        try:
            for kind in kinds:
                _take_kind(cfg, kind, store, tag, ts, tools, artifacts)
            doc = {
                "format": manifest.FORMAT, "tag": tag, **facts,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "timestamp": ts, "store": store.url, "tools": tools, "artifacts": artifacts,
            }
            written = store.put_bytes(manifest.key(tag), manifest.dump(doc))
        except BaseException:
            # Without a manifest these are not a backup; do not leave orphans behind.
            for art in artifacts:
                with contextlib.suppress(Exception, KeyboardInterrupt):
                    remove_artifact(store, art)
            raise
        say(f"taydash: snapshot of {tag} done: {manifest.key(tag)} "
            f"({len(artifacts)} artifact(s), manifest sha256 {written.sha256[:12]})")
        return doc


def remove_artifact(store: Store, art: dict[str, Any]) -> None:
    """Delete one artifact of a backup that has (or will have) no manifest."""
    if art["kind"] == "victoriametrics":
        store.delete_prefix(art["key"])
        return
    for key in (art["key"], art.get("sha256_key")):
        if key:
            store.delete(key)


def _take_kind(cfg: Config, kind: str, store: Store, tag: str, ts: str,
               tools: dict[str, str], out: list[dict[str, Any]]) -> None:
    """Append each finished artifact to ``out`` at once, so a later failure can remove it."""
    snap = cfg.snapshots
    assert snap is not None
    timeout = snapshot_timeout()
    if kind == "postgres":
        from taydash_hooks import snapshot_postgres as pg

        pcfg = snap.postgres
        assert pcfg is not None
        tools["pg_dump"] = pg.tool_version(pcfg)
        several = len(pcfg.databases) > 1
        for db in pcfg.databases:
            out.append(pg.dump(pcfg, db, store, pg.dump_key(tag, ts, db, several), timeout))
        return
    if kind == "victoriametrics":
        from taydash_hooks import snapshot_vm as vm

        vcfg = snap.victoriametrics
        assert vcfg is not None
        tools["vmbackup"] = vm.tool_version(vcfg.vmbackup)
        out.append(vm.backup(vcfg, store, f"vm-backups/{tag}_{ts}/", timeout))
        return
    if kind == "config":
        from taydash_hooks import snapshot_config as bundle

        bcfg = snap.config
        assert bcfg is not None
        if bcfg.paths:
            out.append(bundle.bundle(cfg, bcfg, store, f"config-backups/{tag}_{ts}.tar.gz.gpg",
                                     timeout))
        return
    raise TaydashError(f"unknown snapshot kind {kind!r}")
