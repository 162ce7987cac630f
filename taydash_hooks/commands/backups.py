"""`taydash backups list|show|verify`: the manifests in the store."""

from __future__ import annotations

import sys
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit
from taydash_hooks.output import emit_json, mark, out, say
from taydash_hooks.snapshots import kinds, manifest
from taydash_hooks.snapshots.binding import require_trusted
from taydash_hooks.snapshots.kinds.base import Checked
from taydash_hooks.snapshots.location import open_repo_store
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.store import Store


def list_backups(cwd: Path, as_json: bool) -> int:
    """One line per manifest: tag, time, commit, artifacts."""
    from taydash_hooks.tags.naming import version_key

    repo, cfg, store = open_repo_store(cwd)
    docs = sorted(manifest.load_all(store), key=lambda d: version_key(d.tag))
    trust = {d.tag: _trust(repo, cfg, store, d) for d in docs}
    if as_json:
        emit_json([{"tag": d.tag, "created": d.created, "commit": d.commit,
                    "artifacts": len(d.artifacts), "size": sum(a.size for a in d.artifacts),
                    "manifest": trust[d.tag]} for d in docs])
        return Exit.OK
    if not docs:
        say(f"no backups in {store.url}")
        return Exit.OK
    width = max(len(d.tag) for d in [*docs, Manifest("tag", "", "", ())])
    out(f"{'tag':<{width}}  {'created':<25}  {'commit':<12}  {'size':>10}  {'kinds':<28}  manifest")
    for d in docs:
        kinds_ = ",".join(sorted({a.kind for a in d.artifacts}))
        size = sum(a.size for a in d.artifacts)
        out(f"{d.tag:<{width}}  {d.created:<25}  {d.commit[:12]:<12}  {size:>10}  {kinds_:<28}  "
            f"{trust[d.tag]}")
    return Exit.OK


def _trust(repo: git.Repo, cfg: Config, store: Store, doc: Manifest) -> str:
    """One word or phrase on whether a listed manifest can be believed."""
    from taydash_hooks.snapshots import signing
    from taydash_hooks.snapshots.binding import binding_problem

    if binding_problem(repo, doc, doc.tag):
        return "NOT BOUND to this repository's tag"
    return signing.check(repo, cfg, store, doc).text()


def show(cwd: Path, tag: str, as_json: bool) -> int:
    """The manifest of ``tag``, after checking it belongs to the tag."""
    repo, cfg, store = open_repo_store(cwd)
    doc, sig = require_trusted(repo, cfg, store, tag)
    if as_json:
        emit_json({**doc.to_json(), "signature": {"state": sig.state.name.lower(),
                                                  "signer": sig.signer, "text": sig.text()}})
        return Exit.OK
    out(f"tag       {doc.tag} ({doc.tag_object})")
    out(f"manifest  {sig.text()}")
    out(f"commit    {doc.commit}")
    out(f"tagger    {doc.tagger}")
    out(f"created   {doc.created}")
    out(f"store     {doc.store}")
    for a in doc.artifacts:
        out(f"  {a.kind:<16} {a.key}  {a.size} bytes  sha256 {a.sha256}")
    return Exit.OK


def verify(cwd: Path, tag: str, deep: bool, as_json: bool) -> int:
    """Re-hash every stored file of every artifact of ``tag``; exit 1 when one does not match."""
    repo, cfg, store = open_repo_store(cwd)
    doc, sig = require_trusted(repo, cfg, store, tag)
    rows = kinds.check_all(cfg, store, doc, deep)
    if doc.partial:  # what is there may be fine; the backup is still not whole
        rows.append(("partial", "-", Checked(problems=[
            f"a partial backup: it lacks {', '.join(doc.missing_kinds)} (taken with --only)"])))
    ok = all(c.ok for _, _, c in rows)
    files = sum(c.files for _, _, c in rows)
    size = sum(c.bytes for _, _, c in rows)
    if as_json:
        emit_json({"tag": tag, "ok": ok, "deep": deep, "files": files, "bytes": size,
                   "signature": sig.text(),
                   "artifacts": [{"kind": k, "key": key, "ok": c.ok, "files": c.files,
                                  "bytes": c.bytes, "problem": c.problems[0] if c.problems else None,
                                  "problems": c.problems} for k, key, c in rows]})
    else:
        for kind, key, c in rows:
            detail = f"  {c.problems[0]}" + (f" (+{len(c.problems) - 1} more)" if len(c.problems) > 1
                                              else "") if c.problems else ""
            out(f"{mark(c.ok, sys.stdout):<4} {kind:<16} {key}  {c.files} file(s), {c.bytes} bytes"
                + detail)
        say(f"{tag}: re-hashed {files} file(s), {size} bytes"
            + (" and read them with the tools" if deep else "") + (": every hash matches." if ok
                                                                   else ": verification FAILED."))
    return Exit.OK if ok else Exit.REFUSED


def list_orphans(cwd: Path, as_json: bool) -> int:
    """Store objects that no manifest, tombstone or journal of this clone accounts for."""
    from taydash_hooks.snapshots.orphans import orphans

    repo, _, store = open_repo_store(cwd)
    found = orphans(repo, store)
    if as_json:
        emit_json([{"key": key, "why": why} for key, why in found])
        return Exit.OK
    if not found:
        say(f"no orphans in {store.url}: every object belongs to a backup, a tombstone or a run "
            "of this clone.")
        return Exit.OK
    for key, why in found:
        out(f"{key}  ({why})")
    say(f"{len(found)} orphan(s): reported only, nothing was deleted (a person decides; "
        "`taydash objects versions KEY` shows what is there).")
    return Exit.OK
