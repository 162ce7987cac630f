"""A snapshot and what follows it, the one way every path takes one.

`git tag` (the reference-transaction hook), a push of a tag without a backup (pre-push),
`taydash snapshot`, `taydash backup`/`release` and the background job all call
:func:`snapshot`; none calls :func:`taydash_hooks.snapshots.take.take` itself
(tests/test_layout.py holds that). What follows a snapshot, whether it worked or not, is
:func:`after_snapshot`: today the metrics push; the next duty goes there, once.
"""

from __future__ import annotations

import os

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import TaydashError
from taydash_hooks.output import Word, say
from taydash_hooks.results import Finding, RefResult
from taydash_hooks.skips import skipped
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.snapshots.triggers import DEFER_ENV, record_status, start_background, wanted
from taydash_hooks.store import Store
from taydash_hooks.updates import Kind


def after_snapshot(repo: git.Repo, cfg: Config, tag: str, ok: bool, message: str,
                   background_log: str | None = None) -> None:
    """What follows every snapshot, taken or failed, in this order: the background job's
    status for `taydash health` (``background_log`` is its log), then the metrics push
    (``[metrics] push_url``), so the pushed figures include this very outcome."""
    if background_log is not None:
        record_status(repo, tag, ok, message, background_log)
    if cfg.metrics is None or not cfg.metrics.push_url:
        return  # the metrics module is not even imported: a hook's time is the user's
    from taydash_hooks.lifecycle.metrics import push_after

    push_after(repo, cfg, "the background snapshot" if background_log else "the snapshot")


def snapshot(repo: git.Repo, cfg: Config, tag: str, only: list[str] | None = None, *,
             store: Store | None = None, background_log: str | None = None) -> Manifest:
    """Take the snapshots of ``tag`` (see :func:`~taydash_hooks.snapshots.take.take`), then
    :func:`after_snapshot`, whatever the outcome (a signal included)."""
    from taydash_hooks.snapshots.take import take

    ok, message = False, "interrupted (a signal ended the run; rolled back)"
    try:
        doc = take(repo, cfg, tag, only, store=store)
        ok, message = True, f"{len(doc.artifacts)} artifact(s)"
        return doc
    except TaydashError as exc:
        message = exc.message
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        after_snapshot(repo, cfg, tag, ok, message, background_log)


def on_tag_created(repo: git.Repo, cfg: Config, rows: list[tuple[str, str, str]]) -> list[str]:
    """reference-transaction ``committed``: snapshot each new on_tag tag (git ignores our exit);
    the tags snapshotted here, in the foreground (whether it worked or not)."""
    assert cfg.snapshots is not None
    if skipped("snapshot") or os.environ.get(DEFER_ENV) == "1":
        return []
    done: list[str] = []
    for _old, _new, ref in rows:
        tag = ref[len("refs/tags/"):]
        if not wanted(cfg, tag):
            continue
        if cfg.snapshots.mode == "background":
            log = start_background(repo, tag)
            say(f"snapshot of {tag} started in the background; log: {log}")
            continue
        done.append(tag)
        try:
            snapshot(repo, cfg, tag)
        except TaydashError as exc:
            say(f"snapshot of {tag} {Word.FAILED}: {exc.message} "
                f"(rerun: taydash snapshot {tag})")
    return done


def on_push(repo: git.Repo, cfg: Config, results: list[RefResult]) -> None:
    """pre-push: a pushed on_tag tag without a manifest is snapshotted, blocked or warned about."""
    assert cfg.snapshots is not None
    todo = [r for r in results
            if r.update.is_tag and r.update.kind in (Kind.TAG_CREATE, Kind.UNCHANGED)
            and wanted(cfg, r.update.name)]
    if not todo:
        return
    from taydash_hooks.snapshots.binding import name_taken
    from taydash_hooks.snapshots.location import open_store

    store = open_store(repo, cfg)
    for r in todo:
        tag = r.update.name
        doc = manifest.load(store, tag)
        if doc is not None:
            taken = name_taken(repo, store, tag, doc, r.update.local_oid)
            if taken:  # whatever on_push_missing says: this tag has no backup, another one does
                r.add(Finding(Word.REFUSED, taken))
            continue
        policy = cfg.snapshots.on_push_missing
        if policy == "warn":
            r.add(Finding(Word.WARNING, "no snapshot for this tag"))
        elif policy == "block":
            r.add(Finding(Word.REFUSED, f"no snapshot for {tag} (run: taydash snapshot {tag})"))
        else:
            try:
                snapshot(repo, cfg, tag, store=store)
                r.add(Finding(Word.OK, "snapshot taken"))
            except TaydashError as exc:
                r.add(Finding(Word.REFUSED, f"snapshot failed: {exc.message}"))
