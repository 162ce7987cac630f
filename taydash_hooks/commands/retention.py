"""`taydash backups prune` and `taydash backups delete TAG`: retention by policy, deletion by hand.

Both decide only from manifests this repository can believe (bound to its tag, and signed as
``[snapshots] signed_manifests`` asks): whatever else sits in the store is listed as not
judged and left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError, refused, usage
from taydash_hooks.output import line, out, plural, say, warn
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.snapshots.retention import (
    Decision,
    Policy,
    delete,
    finish_interrupted,
    locked_until,
    newest_release,
    plan,
)
from taydash_hooks.store import Store

if TYPE_CHECKING:
    from taydash_hooks.snapshots.signing import Signer

Confirm = Callable[[str], bool]


def _table(title: str, rows: list[Decision], with_reasons: bool) -> None:
    if not rows:
        return
    width = max(len(d.doc.tag) for d in [*rows]) if rows else 3
    out(f"{title} {plural(len(rows), 'backup')}:")
    out(f"{'tag':<{width}}  {'created':<25}  " + ("reasons" if with_reasons else "size"))
    for d in rows:
        detail = ", ".join(d.reasons) if with_reasons else f"{sum(a.size for a in d.doc.artifacts)} bytes"
        out(f"{d.doc.tag:<{width}}  {d.doc.created:<25}  {detail}")
    out()


def _remove(store: Store, doc: Manifest, by: Signer | None) -> bool:
    """Delete one backup unless Object Lock holds any of it, its retention record signed by
    ``by``; False when a lock kept it."""
    until = locked_until(store, doc)
    if until is not None:
        warn(f"kept {doc.tag}: its objects are under Object Lock until "
             f"{until:%Y-%m-%d %H:%M} UTC; nothing of it was removed.")
        return False
    delete(store, doc, by)
    line(f"removed {doc.tag} ({plural(len(doc.artifacts), 'artifact')})")
    return True


def _collect(store: Store, dry_run: bool = False) -> None:
    """Deduplicated chunks no remaining backup names (snapshots/chunks.py), removed after a
    prune or a delete; said when a running snapshot or the grace period keeps them."""
    from taydash_hooks.snapshots import chunks

    if not store.keys(chunks.PREFIX):
        return
    try:
        done = chunks.collect(store, chunks.kept_listings(store), dry_run)
    except TaydashError as exc:
        warn(f"no chunk was removed: {exc.message}")
        return
    if done.blocked_by:
        say(f"no chunk was removed: a snapshot is running ({done.blocked_by[0]}); the next "
            "prune removes what no backup names.")
        return
    verb = "would remove" if dry_run else "removed"
    young = (f"; {plural(done.kept_young, 'chunk')} kept for the grace period or a lock"
             if done.kept_young else "")
    say(f"{verb} {plural(done.removed, 'chunk')} no backup names{young}.")


def _signer(repo: git.Repo, cfg: Config) -> Signer | None:
    """What signs the retention records (as manifests are signed; asked once, before anything
    is removed, so a key that cannot sign stops a run that would leave unbelievable records)."""
    from taydash_hooks.snapshots import signing

    return signing.signer(repo, cfg)


def _finish(store: Store, by: Signer | None) -> None:
    for tomb in finish_interrupted(store, by):
        if tomb.finished:
            say(f"finished removing {tomb.tag} (an earlier delete was interrupted).")
        else:
            warn(f"{tomb.key}: nothing of a backup removed: {tomb.why}.")


def _naming(cfg: Config) -> str:
    return cfg.tags.naming if cfg.tags else "convention"


def trusted(repo: git.Repo, cfg: Config, store: Store) -> tuple[list[Manifest], list[str]]:
    """The manifests retention may judge, and a line for each one it may not (and why)."""
    from taydash_hooks.snapshots.binding import Judge

    believed, not_judged = [], []
    with Judge(repo, cfg, store) as judge:
        for tag in manifest.all_tags(store):
            try:
                doc = manifest.require(store, tag)
            except Exception as exc:  # a manifest that does not even parse is someone else's
                not_judged.append(f"{tag}: {exc}")
                continue
            _, problem = judge(doc, tag)
            if problem:
                not_judged.append(f"{tag}: {problem}")
            else:
                believed.append(doc)
    return believed, not_judged


def prune(cwd: Path, policy: Policy, dry_run: bool, yes: bool = False,
          confirm: Confirm | None = None) -> int:
    """Apply ``policy`` (over [snapshots.retention]) after a confirmation (``yes`` skips it);
    exit 1 when a lock kept a backup or nothing was confirmed."""
    from taydash_hooks.snapshots.location import open_repo_store

    repo, cfg, store = open_repo_store(cwd)
    defaults = cfg.snapshots.retention if cfg.snapshots and cfg.snapshots.retention else None
    if defaults is not None:
        policy = Policy(policy.keep_last or defaults.keep_last,
                        policy.keep_monthly or defaults.keep_monthly,
                        policy.keep_within or defaults.keep_within)
    if policy.empty:
        raise usage("no retention rule: pass --keep-last, --keep-monthly or --keep-within, or "
                    "set them in [snapshots.retention] (pruning without one would remove all "
                    "but the newest release).")
    by = None if dry_run else _signer(repo, cfg)
    if not dry_run:
        _finish(store, by)
    docs, not_judged = trusted(repo, cfg, store)
    decisions = plan(docs, policy, _naming(cfg)) if docs else []
    keep = [d for d in decisions if d.keep]
    remove = [d for d in decisions if not d.keep]
    _table("keep", keep, True)
    asking = yes or confirm is not None
    _table("remove" if asking and not dry_run else "would remove", remove, False)
    for why in not_judged:
        warn(f"not judged, left as it is: {why}")
    if dry_run or not remove:
        say(f"{plural(len(remove), 'backup')} would be removed (dry run)." if dry_run else
            "nothing to remove.")
        if not dry_run:
            _collect(store)  # what an earlier run could not collect (a snapshot was running)
        return Exit.OK
    if not yes:
        if confirm is None:
            raise refused(f"nothing was removed: there is no terminal to confirm on; pass "
                          f"--yes to remove the {plural(len(remove), 'backup')} listed above.")
        if not confirm(f"Remove {plural(len(remove), 'backup')} listed above from {store.url}?"):
            raise refused("nothing was removed (confirm, or pass --yes).")
    try:
        kept_by_lock = [d.doc.tag for d in remove if not _remove(store, d.doc, by)]
        _collect(store)
    finally:
        from taydash_hooks.lifecycle.metrics import push_after

        push_after(repo, cfg, "prune")
    return Exit.REFUSED if kept_by_lock else Exit.OK


def delete_one(cwd: Path, tag: str, yes: bool, confirm: Confirm) -> int:
    """Delete the backup of ``tag`` (never the newest release's); exit 1 when refused."""
    from taydash_hooks.snapshots.binding import require_trusted
    from taydash_hooks.snapshots.location import open_repo_store

    repo, cfg, store = open_repo_store(cwd)
    by = _signer(repo, cfg)
    _finish(store, by)
    doc, _ = require_trusted(repo, cfg, store, tag)
    docs, _ = trusted(repo, cfg, store)
    if tag == newest_release(docs, _naming(cfg)):
        raise refused(f"{tag} is the newest release with a backup; it is never deleted (make a "
                      "newer backup first).")
    if not yes and not confirm(f"Delete the backup of {tag} ({plural(len(doc.artifacts), 'artifact')}"
                               f" in {store.url})?"):
        raise refused("nothing was deleted.")
    removed = _remove(store, doc, by)
    _collect(store)
    return Exit.OK if removed else Exit.REFUSED
