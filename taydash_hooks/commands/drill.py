"""`taydash drill [--last N]`: the restore drill over the last N release tags, as a table."""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, refused
from taydash_hooks.lifecycle.metrics import record_and_push
from taydash_hooks.lifecycle.records import Activity
from taydash_hooks.lifecycle.verification import columns, remote_name, verify_tag
from taydash_hooks.output import emit_json, out, warn
from taydash_hooks.snapshots.expected import Presence, expected
from taydash_hooks.tags.releases import release_tags


def _selection(repo: git.Repo, cfg: Config, last: int) -> tuple[list[str], list[str]]:
    """The last ``last`` release tags retention kept (to drill), and the pruned ones among the
    newest ``last`` (listed, neither a pass nor a failure). A tag with neither a backup nor a
    believed retention record is drilled, and fails."""
    tags = [name for name, _ in release_tags(repo, cfg)]
    if cfg.snapshots is None:
        return tags[:last], []
    from taydash_hooks.snapshots import manifest
    from taydash_hooks.snapshots.location import open_store
    from taydash_hooks.snapshots.removals import pruned as removed

    store = open_store(repo, cfg)
    records, problems = removed(repo, cfg, store)
    for problem in problems:
        warn(problem)
    drilled: list[str] = []
    pruned: list[str] = []
    for i, e in enumerate(expected(tags, set(manifest.all_tags(store)), records)):
        if len(drilled) == last:
            break
        if e.presence is not Presence.PRUNED:
            drilled.append(e.tag)
        elif i < last:  # the pruned among the newest N: where the drill would have looked
            pruned.append(e.tag)
    return drilled, pruned


def drill(cwd: Path, last: int, as_json: bool, environment: bool = False) -> int:
    """The monthly restore drill; a table and exit 1 when any cell failed (a pruned tag is
    a row of its own that neither passes nor fails). ``environment`` (or ``[drill]
    environment = true``) also rebuilds each tag's compose stack (lifecycle/environment.py)."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if not release_tags(repo, cfg):
        raise refused("there are no release tags to drill (create one with taydash release).")
    tags, pruned = _selection(repo, cfg, last)
    remote = remote_name(repo)
    rebuild = environment or bool(cfg.drill and cfg.drill.environment)
    reports = [verify_tag(repo, cfg, remote, t, restores=True, environment=rebuild)
               for t in tags]
    failed = sum(not r.ok for r in reports)
    record_and_push(repo, cfg, Activity.DRILL, failed == 0, len(reports), failed,
                    sum(r.seconds for r in reports))
    if as_json:
        emit_json({"ok": all(r.ok for r in reports),
                   "tags": [{**r.as_dict(), "state": "drilled"} for r in reports],
                   "pruned": pruned})
    else:
        width = max(len(t) for t in [*tags, *pruned, "tag"])
        names = columns(environment=rebuild)
        out(f"{'tag':<{width}}  " + "  ".join(f"{c:<10}" for c in names) + "  duration")
        for r in reports:
            cells = []
            for name in names:
                c = r.get(name)
                cells.append(f"{c.cell() if c else 'n/a':<10}")
            out(f"{r.tag:<{width}}  " + "  ".join(cells) + f"  {r.seconds:.1f} s")
        for tag in pruned:
            out(f"{tag:<{width}}  pruned (retention removed its backup on purpose: not drilled)")
        for r in reports:
            for c in r.checks:
                if c.ok is False:
                    out(f"{r.tag}: {c.name}: {c.detail}")
    return Exit.OK if all(r.ok for r in reports) else Exit.REFUSED
