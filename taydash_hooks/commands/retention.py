"""`taydash backups prune` and `taydash backups delete TAG`: retention by policy, deletion by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from taydash_hooks.errors import Exit, refused, usage
from taydash_hooks.output import line, out, plural, say, warn
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.snapshots.retention import (
    Decision,
    Policy,
    delete,
    finish_interrupted,
    locked_until,
    plan,
)
from taydash_hooks.store import Store
from taydash_hooks.tags.naming import version_key


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


def _remove(store: Store, doc: Manifest) -> bool:
    """Delete one backup unless Object Lock holds any of it; False when a lock kept it."""
    until = locked_until(store, doc)
    if until is not None:
        warn(f"kept {doc.tag}: its objects are under Object Lock until "
             f"{until:%Y-%m-%d %H:%M} UTC; nothing of it was removed.")
        return False
    delete(store, doc)
    line(f"removed {doc.tag} ({plural(len(doc.artifacts), 'artifact')})")
    return True


def _finish(store: Store) -> None:
    for tag in finish_interrupted(store):
        say(f"finished removing {tag} (an earlier delete was interrupted).")


def prune(cwd: Path, policy: Policy, dry_run: bool) -> int:
    """Apply ``policy`` (over [snapshots.retention]); exit 1 when a lock kept a backup."""
    from taydash_hooks.snapshots.location import open_repo_store

    _, cfg, store = open_repo_store(cwd)
    defaults = cfg.snapshots.retention if cfg.snapshots and cfg.snapshots.retention else None
    if defaults is not None:
        policy = Policy(policy.keep_last or defaults.keep_last,
                        policy.keep_monthly or defaults.keep_monthly,
                        policy.keep_within or defaults.keep_within)
    if policy.empty:
        raise usage("no retention rule: pass --keep-last, --keep-monthly or --keep-within, or "
                    "set them in [snapshots.retention] (pruning without one would remove all "
                    "but the newest release).")
    if not dry_run:
        _finish(store)
    decisions = plan(manifest.load_all(store), policy)
    keep = [d for d in decisions if d.keep]
    remove = [d for d in decisions if not d.keep]
    _table("keep", keep, True)
    _table("would remove" if dry_run else "remove", remove, False)
    if dry_run or not remove:
        say(f"{plural(len(remove), 'backup')} would be removed (dry run)." if dry_run else
            "nothing to remove.")
        return Exit.OK
    kept_by_lock = [d.doc.tag for d in remove if not _remove(store, d.doc)]
    return Exit.REFUSED if kept_by_lock else Exit.OK


def delete_one(cwd: Path, tag: str, yes: bool, confirm: Callable[[str], bool]) -> int:
    """Delete the backup of ``tag`` (never the newest release's); exit 1 when refused."""
    from taydash_hooks.snapshots.location import open_repo_store

    _, _, store = open_repo_store(cwd)
    _finish(store)
    doc = manifest.require(store, tag)
    newest = max(manifest.all_tags(store), key=version_key)
    if tag == newest:
        raise refused(f"{tag} is the newest release with a backup; it is never deleted (make a "
                      "newer backup first).")
    if not yes and not confirm(f"Delete the backup of {tag} ({plural(len(doc.artifacts), 'artifact')}"
                               f" in {store.url})?"):
        raise refused("nothing was deleted.")
    return Exit.OK if _remove(store, doc) else Exit.REFUSED
