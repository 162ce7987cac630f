"""`taydash backups list|show|verify`: the manifests in the store."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError
from taydash_hooks.lifecycle.metrics import record_and_push
from taydash_hooks.lifecycle.records import Activity
from taydash_hooks.output import emit_json, mark, out, plural, say, shown
from taydash_hooks.snapshots import kinds, manifest
from taydash_hooks.snapshots.binding import Judge, require_trusted
from taydash_hooks.snapshots.kinds.base import Checked
from taydash_hooks.snapshots.location import open_repo_store
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.store import Store


def list_backups(cwd: Path, as_json: bool) -> int:
    """One line per manifest: tag, time, commit, artifacts."""
    from concurrent.futures import ThreadPoolExecutor

    from taydash_hooks.snapshots.binding import Judge
    from taydash_hooks.tags.naming import version_key

    repo, cfg, store = open_repo_store(cwd)
    docs = sorted(manifest.load_all(store), key=lambda d: version_key(d.tag))
    # One git call for every tag, one keyring, the signatures checked several at a time.
    with Judge(repo, cfg, store) as judge, ThreadPoolExecutor(_WORKERS) as pool:
        trust = dict(zip((d.tag for d in docs), pool.map(lambda d: _trust(judge, d), docs),
                         strict=True))
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
        out(f"{shown(d.tag):<{width}}  {shown(d.created):<25}  {shown(d.commit[:12]):<12}  "
            f"{size:>10}  {shown(kinds_):<28}  "
            f"{trust[d.tag]}")
    return Exit.OK


# Signature checks at once: each is a short gpgv or ssh-keygen, whose start-up overlaps.
_WORKERS = min(8, 2 * (os.cpu_count() or 1))


def _trust(judge: Judge, doc: Manifest) -> str:
    """One word or phrase on whether a listed manifest can be believed."""
    sig, _ = judge(doc, doc.tag)
    return sig.text() if sig is not None else "NOT BOUND to this repository's tag"


def show(cwd: Path, tag: str, as_json: bool) -> int:
    """The manifest of ``tag``, after checking it belongs to the tag."""
    repo, cfg, store = open_repo_store(cwd)
    doc, sig = require_trusted(repo, cfg, store, tag)
    if as_json:
        emit_json({**doc.to_json(), "signature": {"state": sig.state.name.lower(),
                                                  "signer": sig.signer, "text": sig.text()}})
        return Exit.OK
    out(f"tag       {shown(doc.tag)} ({shown(doc.tag_object)})")
    out(f"manifest  {shown(sig.text())}")
    out(f"commit    {shown(doc.commit)}")
    out(f"tagger    {shown(doc.tagger)}")
    out(f"created   {shown(doc.created)}")
    out(f"store     {shown(doc.store)}")
    out("tools     " + shown(", ".join(f"{k} {v}" for k, v in sorted(doc.tools.items()))))
    if doc.partial:
        out(f"partial   lacks {', '.join(doc.missing_kinds)}")
    for a in doc.artifacts:
        out(f"  {shown(kinds.get(a.kind).label(a)):<28} {shown(a.key)}  {a.size} bytes  "
            f"sha256 {a.sha256}")
    return Exit.OK


def _rows(repo: git.Repo, cfg: Config, store: Store, doc: Manifest,
          deep: bool) -> list[tuple[str, str, Checked]]:
    from taydash_hooks.snapshots import sums

    rows = kinds.check_all(cfg, store, doc, deep)
    rows.append(("checksums", sums.key(doc.tag), sums.check(repo, cfg, store, doc)))
    if doc.partial:  # what is there may be fine; the backup is still not whole
        rows.append(("partial", "-", Checked(problems=[
            f"a partial backup: it lacks {', '.join(doc.missing_kinds)} (taken with --only)"])))
    return rows


def _code(rows: list[tuple[str, str, Checked]]) -> Exit:
    """1 when a stored byte or a backup is wrong; 3 when all that could be read was right but
    a deep step could not run here (a missing key); else 0."""
    if not all(c.ok for _, _, c in rows):
        return Exit.REFUSED
    return Exit.ENVIRONMENT if any(c.not_possible for _, _, c in rows) else Exit.OK


def _recorded(repo: git.Repo, cfg: Config, start: float, checked: int, failed: int) -> None:
    record_and_push(repo, cfg, Activity.VERIFY, failed == 0, checked, failed,
                    time.monotonic() - start)


def verify(cwd: Path, tag: str, deep: bool, as_json: bool) -> int:
    """Re-hash every stored file of every artifact of ``tag``; exit 1 when one does not match,
    3 when they all match but a deep step was not possible here."""
    repo, cfg, store = open_repo_store(cwd)
    start = time.monotonic()
    try:
        doc, sig = require_trusted(repo, cfg, store, tag)
        rows = _rows(repo, cfg, store, doc, deep)
    except TaydashError:
        _recorded(repo, cfg, start, 1, 1)
        raise
    code = _code(rows)
    _recorded(repo, cfg, start, 1, 0 if code is Exit.OK else 1)
    files = sum(c.files for _, _, c in rows)
    size = sum(c.bytes for _, _, c in rows)
    if as_json:
        emit_json({"tag": tag, "ok": code is Exit.OK, "deep": deep, "files": files, "bytes": size,
                   "signature": sig.text(),
                   "artifacts": [{"kind": k, "key": key, "ok": c.ok, "files": c.files,
                                  "bytes": c.bytes, "problem": c.problems[0] if c.problems else None,
                                  "problems": c.problems, "not_possible": c.not_possible,
                                  "notes": c.notes} for k, key, c in rows]})
        return code
    for kind, key, c in rows:
        detail = f"  {c.problems[0]}" + (f" (+{len(c.problems) - 1} more)" if len(c.problems) > 1
                                          else "") if c.problems else ""
        out(f"{mark(c.ok, sys.stdout):<4} {kind:<16} {key}  {c.files} file(s), {c.bytes} bytes"
            + detail + "".join(f"; {n}" for n in c.notes))
        for why in c.not_possible:
            out(f"{'':<4} {'':<16} deep step not possible here: {why}")
    verdict = {Exit.OK: ": every hash matches.", Exit.REFUSED: ": verification FAILED.",
               Exit.ENVIRONMENT: ": every hash matches, but a deep step was not possible here "
                                 "(see above)."}[code]
    say(f"{tag}: re-hashed {files} file(s), {size} bytes"
        + (" and read them with the tools" if deep else "") + verdict)
    return code


def verify_many(cwd: Path, last: int | None, deep: bool, as_json: bool) -> int:
    """Every backup (or the ``last`` N by version), several at a time: one line each and a
    total; exit 1 when any failed, 3 when none failed but a deep step was not possible."""
    from concurrent.futures import ThreadPoolExecutor

    from taydash_hooks.tags.naming import version_key

    repo, cfg, store = open_repo_store(cwd)
    start = time.monotonic()
    tags = sorted(manifest.all_tags(store), key=version_key, reverse=True)
    if last is not None:
        tags = tags[:last]

    def one(judge: Judge, tag: str) -> tuple[str, Exit, str]:
        try:
            doc = manifest.require(store, tag)
            sig, problem = judge(doc, tag)
            if problem or sig is None:
                return tag, Exit.REFUSED, problem or "not bound"
            rows = _rows(repo, cfg, store, doc, deep)
        except TaydashError as exc:
            return tag, Exit.REFUSED, exc.message
        code = _code(rows)
        bad = [f"{key}: {c.problems[0]}" for _, key, c in rows if c.problems]
        lost = [w for _, _, c in rows for w in c.not_possible]
        files, size = sum(c.files for _, _, c in rows), sum(c.bytes for _, _, c in rows)
        text = (bad[0] if bad else f"deep step not possible: {lost[0]}" if lost else
                f"{len(rows)} artifact(s), {files} file(s), {size} bytes; manifest {sig.text()}")
        return tag, code, text

    # Mostly waiting on the store and on gpg: a few at a time, whatever the core count.
    with Judge(repo, cfg, store) as judge, \
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="taydash-verify") as pool:
        results = list(pool.map(lambda tag: one(judge, tag), tags))
    failed = [t for t, c, _ in results if c is Exit.REFUSED]
    partial = [t for t, c, _ in results if c is Exit.ENVIRONMENT]
    _recorded(repo, cfg, start, len(results), len(failed) + len(partial))
    if as_json:
        emit_json({"ok": not failed and not partial, "verified": len(results),
                   "failed": failed, "not_possible": partial,
                   "backups": [{"tag": t, "result": {Exit.OK: "ok", Exit.REFUSED: "failed",
                                                     Exit.ENVIRONMENT: "not possible"}[c],
                                "detail": d} for t, c, d in results]})
    else:
        width = max((len(t) for t in tags), default=3)
        for tag, code, detail in results:
            word = {Exit.OK: "ok", Exit.REFUSED: "FAIL", Exit.ENVIRONMENT: "n/a"}[code]
            out(f"{word:<4} {tag:<{width}}  {detail}")
        say(f"verified {plural(len(results), 'backup')}: {len(results) - len(failed) - len(partial)}"
            f" ok, {len(failed)} FAILED" + (f", {len(partial)} not fully checkable here"
                                            if partial else ""))
    if failed:
        return Exit.REFUSED
    return Exit.ENVIRONMENT if partial else Exit.OK


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
        out(f"{shown(key)}  ({shown(why)})")
    say(f"{len(found)} orphan(s): reported only, nothing was deleted (a person decides; "
        "`taydash objects versions KEY` shows what is there).")
    return Exit.OK
