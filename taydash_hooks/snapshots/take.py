"""Taking the snapshots of one tag: PostgreSQL, VictoriaMetrics, config bundle, then the manifest.

The manifest is written last and never overwritten; a failure anywhere
leaves no manifest (and the artifacts of the failed attempt are removed).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from taydash_hooks import __version__, git
from taydash_hooks.config import KINDS, Config
from taydash_hooks.errors import refused, usage
from taydash_hooks.output import line, plural, say, warn
from taydash_hooks.snapshots import kinds, manifest
from taydash_hooks.snapshots.kinds.base import TakeJob, snapshot_timeout
from taydash_hooks.snapshots.location import open_store
from taydash_hooks.snapshots.lock import tag_id, tag_lock
from taydash_hooks.snapshots.manifest import Artifact, Manifest
from taydash_hooks.statefiles import read_private, write_private
from taydash_hooks.store import Store
from taydash_hooks.store.base import KeyTaken, from_attempt


def timestamp(now: float | None = None) -> str:
    """UTC ``YYYYmmdd_HHMMSS``: the TS in every store key ``<tag>_<TS>-<RUN>``."""
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(time.time() if now is None else now))


def tag_facts(repo: git.Repo, tag: str) -> dict[str, str]:
    """Tag object id, commit and tagger of a local tag; exit 2 when it does not exist."""
    ref = f"refs/tags/{tag}"
    # for-each-ref takes patterns (`v*`) and prefixes (`v1` lists `v1/rc`): keep the exact ref only.
    res = git.git("for-each-ref", "--format=%(refname)%00%(objectname) %(objecttype)%00"
                  "%(taggername) %(taggeremail) %(taggerdate:iso-strict)%00%(creatordate:unix)",
                  ref, cwd=repo.root)
    lines = [ln.split("\0") for ln in res.out.splitlines()]
    found = [parts for parts in lines if len(parts) == 4 and parts[0] == ref]
    if not found:
        raise usage(f"there is no tag {tag!r} in this repository (a TAG names exactly one tag).")
    _, head, tagger, created = found[0]
    oid, kind = head.split()
    commit = git.rev_parse(f"{oid}^{{commit}}", repo.root)
    if commit is None:
        raise usage(f"tag {tag} does not point at a commit.")
    return {"tag_object": oid, "tag_type": kind, "commit": commit, "tagger": tagger.strip(),
            "tag_time": created.strip()}


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
    _policy_accepts(repo, cfg, tag, facts["tag_object"])
    store = store or open_store(repo, cfg)
    with tag_lock(repo.state_dir, tag):
        existing = manifest.load(store, tag)
        if existing is not None and existing.tag_object != facts["tag_object"]:
            raise refused(
                f"{store.url} holds a backup named {tag} of another tag object "
                f"({existing.tag_object[:12]}, this one is {facts['tag_object'][:12]}); "
                "a backup is never replaced: use a new tag name.")
        # We hold the tag's lock: a journal left for this tag is a dead run of this clone,
        # cleaned now even when another clone completed the tag meanwhile (never the live run).
        _clean_dead_runs(repo, cfg, store, tag, existing.run if existing else None)
        if existing is not None:
            say(f"{tag} already has a backup ({manifest.key(tag)} in {store.url}); nothing to do.")
            return existing
        if not names:
            raise usage("[snapshots] has no kinds configured (add [snapshots.postgres], "
                        "[snapshots.victoriametrics] or [snapshots.config]).")
        ts = timestamp()
        # This run's own keys: <tag>_<TS>-<RUN>. Two runs (two clones, two machines) of
        # one tag never share a key, so a rollback can only ever touch its own objects.
        stamp = f"{ts}-{secrets.token_hex(4)}"
        _check_key_room(cfg, names, tag, stamp)
        age = _tag_age(facts)
        if age is not None and age > STALE_AFTER:
            warn(f"tag {tag} was created {_human(age)} ago: this snapshot captures the data as it "
                 "is now, not as it was at the tag (recorded in the manifest).")
        from taydash_hooks.snapshots import signing, sums

        # Asked before anything is stored: "required" with a key that cannot sign stops here.
        by = signing.signer(repo, cfg)
        say(f"snapshot of {tag} ({', '.join(names)}) -> {store.url}")
        left_out = _left_out(cfg, names)
        if left_out:
            warn(f"a partial backup: {', '.join(left_out)} not taken (--only); "
                 f"verify and drill will fail it, and it can be deleted to take a full one.")
        # Refused here, before anything is stored: a server that cannot keep one writer per key,
        # a kind that cannot work with this store.
        store.prepare_writes()
        for name in names:
            kinds.get(name).ready(cfg, store)
        artifacts: list[Artifact] = []
        tools: dict[str, str] = {"taydash": __version__}
        journal = _journal(repo, tag, stamp)
        lost_race = False
        sums_written: list[str] = []
        job = TakeJob(cfg, store, tag, stamp, snapshot_timeout(), _remembering(journal))
        # Deduplicated chunks may be reused from other backups: a prune collects none while
        # this run holds its lock, up to the manifest that names them (snapshots/chunks.py).
        held = contextlib.ExitStack()
        if any(kinds.get(name).shares_objects(cfg) for name in names):
            from taydash_hooks.snapshots import chunks

            held.enter_context(chunks.run_lock(store, stamp))
        with held:
            try:
                _take_all(cfg, names, job, tools, artifacts)
                doc = Manifest(
                    tag=tag, tag_object=facts["tag_object"], tag_type=facts["tag_type"],
                    commit=facts["commit"], tagger=facts["tagger"],
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    timestamp=ts, store=store.url, tools=tools, artifacts=tuple(artifacts),
                    run=stamp, taken_after_tag_s=age, missing_kinds=left_out)
                data = manifest.dump(doc)
                # The signed checksum list, for a recovery by hand (snapshots/sums.py); before the
                # manifest, so a backup never lacks it, and removed with the run on a failure.
                listed = sums.listing(doc.artifacts)
                # Both signatures before anything is written: a failure stores neither.
                signature, listed_sig = by.sign_each(data, listed) if by else (None, None)
                if not store.exists(manifest.key(tag)):
                    # A signature or list without its manifest (a delete interrupted between them,
                    # a dead run, or planted) vouches for nothing; left there, it would block
                    # every new backup of the tag.
                    for stale in (sums.key(tag), sums.sig_key(tag), signing.key(tag)):
                        if store.exists(stale):
                            store.delete(stale)
                try:
                    store.put_bytes(sums.key(tag), listed)
                    sums_written.append(sums.key(tag))
                    if listed_sig is not None:
                        store.put_bytes(sums.sig_key(tag), listed_sig)
                        sums_written.append(sums.sig_key(tag))
                except KeyTaken:
                    lost_race = True  # another run is writing this tag's backup right now
                    raise refused(f"another run owns {tag}: its checksum list was written first "
                                  f"({sums.key(tag)} in {store.url}); this run's artifacts were "
                                  "removed.") from None
                try:
                    written = store.put_bytes(manifest.key(tag), data)
                except KeyTaken:
                    lost_race = True
                    raise refused(f"another run owns {tag}: its manifest was written first "
                                  f"({manifest.key(tag)} in {store.url}); this run's artifacts were "
                                  "removed.") from None
                if signature is not None:
                    try:
                        store.put_bytes(signing.key(tag), signature)
                    except BaseException:
                        # Without its signature this manifest is not the one we meant to write.
                        with contextlib.suppress(Exception):
                            store.delete(manifest.key(tag), written.version_id)
                        raise
            except BaseException:
                # Without a manifest these are not a backup; do not leave orphans behind.
                removed = True
                for written_key in sums_written:  # only what this run wrote itself
                    with contextlib.suppress(Exception):
                        store.delete(written_key)
                for art in artifacts:
                    try:
                        kinds.remove(store, art)
                    except (Exception, KeyboardInterrupt):
                        removed = False
                # A lost race: every upload had finished, and what it stored is removed, so the
                # journal goes. Any other failure keeps it: an upload the store could not abort
                # (the server went away, an interrupt mid-part) is cleaned by the next run here.
                if removed and lost_race:
                    _end_journal(journal)
                elif removed:
                    # Interrupted (Ctrl-C, SIGTERM) or failed: what the kinds noted and any
                    # partial upload of this run are undone now, the way the next run would; the
                    # journal stays only when that cannot be done (the store went away).
                    with contextlib.suppress(Exception):
                        _clean_run(cfg, store, tag, journal, None)
                raise
        _end_journal(journal)
        say(f"snapshot of {tag} done: {manifest.key(tag)} "
            f"({plural(len(artifacts), 'artifact')}, manifest sha256 {written.sha256[:12]}"
            f"{', signed with ' + by.key if by else ', unsigned'})")
        # What the team's scripts printed, to paste into a ticket: where, which version, hash.
        for art in artifacts:
            line(f"  {art.kind:<16} {store.url.rstrip('/')}/{art.key}")
            line(f"  {'':<16} version {art.version_id or '-'}  sha256 {art.sha256}")
        return doc


def _left_out(cfg: Config, names: list[str]) -> tuple[str, ...]:
    """The enabled kinds this run does not take (``--only``): the backup is partial."""
    enabled = cfg.snapshots.kinds if cfg.snapshots else ()
    return tuple(k for k in enabled if k not in names and kinds.get(k).configured(cfg))


def _policy_accepts(repo: git.Repo, cfg: Config, tag: str, oid: str) -> None:
    """Refuse to snapshot a release tag the policy refuses (also one made with
    TAYDASH_SKIP=tags): its manifest would block the name for a good tag later."""
    if cfg.tags is None:
        return
    from taydash_hooks.tags.policy import TagPolicy
    from taydash_hooks.tags.signatures import At

    # The tag may be older than the current keys (a snapshot taken after a rotation): it is
    # judged when it was signed, like every reader of history.
    with TagPolicy(repo, cfg, At.SIGNED) as policy:
        if not policy.is_release(tag):
            return
        verdict = policy.judge_many([(tag, oid)])[0]
    if not verdict.ok:
        raise refused(f"{tag} is refused by the tag policy ({verdict.reason}); it is not "
                      "snapshotted. Delete it and make a conforming tag.")


def _take_all(cfg: Config, names: list[str], job: TakeJob, tools: dict[str, str],
              artifacts: list[Artifact]) -> None:
    """Take every kind side by side (one thread each), so the tag waits for the slowest and the
    kinds are captured at nearly the same moment.

    Each finished artifact is appended at once, so a failure can remove it. The first failure
    (or Ctrl-C) aborts the others: their child processes are killed and their threads joined
    before the error goes on to the rollback.
    """
    import threading
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from taydash_hooks import process

    lock = threading.Lock()

    def one(name: str) -> None:
        kind = kinds.get(name)
        taking = iter(kind.take(job))
        while True:
            start = time.time()
            art = next(taking, None)
            if art is None:
                # Asked after the take, which asks them itself while the server answers.
                versions = kind.tool_versions(cfg)
                with lock:
                    tools.update(versions)
                return
            art = replace(art, started=datetime.fromtimestamp(start, timezone.utc).isoformat(
                timespec="milliseconds"), seconds=round(time.time() - start, 3))
            with lock:
                artifacts.append(art)

    if len(names) == 1:
        one(names[0])
        return
    pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="taydash-kind")
    futures = [pool.submit(one, name) for name in names]
    try:
        # Returns at the first failure, or when all are done; result() raises that failure.
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()
    except BaseException:
        process.kill_all()  # what the other kinds are blocked on ends now
        try:
            wait(futures, timeout=60)
        finally:
            process.end_abort()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


NAME_MAX = 255  # bytes in one file name, the limit of every local filesystem we meet


def _check_key_room(cfg: Config, names: list[str], tag: str, stamp: str) -> None:
    """Refuse, before taking anything, a tag whose keys (those of the kinds ``names``, the
    ones this run takes) could not be file names."""
    run = f"{tag.rsplit('/', 1)[-1]}_{stamp}"
    partial = "." + "0" * 32 + ".partial"  # what the file store adds while writing
    files = [f".{file}{partial}" for name in names
             for file in kinds.get(name).file_names(cfg, run)]
    longest = max((len(os.fsencode(f)) for f in files), default=0)
    if longest > NAME_MAX:
        raise usage(f"tag name {tag[:40]!r}... is too long to back up: its store keys would need "
                    f"file names of {longest} bytes, and {NAME_MAX} is the limit; use a shorter "
                    "tag name.")


STALE_AFTER = 3600  # seconds between a tag and its snapshot before we say so


def _tag_age(facts: dict[str, str]) -> int | None:
    try:
        return max(0, int(time.time()) - int(facts["tag_time"]))
    except (KeyError, ValueError):
        return None


def _human(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def _runs_dir(repo: git.Repo) -> Path:
    return repo.state_dir / "runs"


def _journal(repo: git.Repo, tag: str, stamp: str) -> Path:
    """Record that this run may leave objects under its keys, until it ends one way or another."""
    path = _runs_dir(repo) / f"{tag_id(tag)}-{stamp}.json"
    write_private(path, json.dumps({"tag": tag, "stamp": stamp, "pid": os.getpid()}).encode())
    return path


def _end_journal(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _remembering(journal: Path) -> Callable[[str, str], None]:
    """What a kind calls to note, in this run's journal, something it must undo if the run is
    killed (a VictoriaMetrics snapshot): the next run of the tag here finds and removes it."""
    lock = threading.Lock()

    def remember(kind: str, what: str) -> None:
        with lock:
            doc = json.loads(read_private(journal))
            doc.setdefault("leftovers", {}).setdefault(kind, []).append(what)
            write_private(journal, json.dumps(doc).encode())

    return remember


def _clean_dead_runs(repo: git.Repo, cfg: Config, store: Store, tag: str,
                     live_run: str | None) -> None:
    """Remove what a killed run of this clone left: its partial uploads, orphan objects and
    what its kinds noted (a VictoriaMetrics snapshot).

    Only keys of that run (its ``<tag>_<TS>-<RUN>``) are touched: never another clone's
    run, which may be writing the same tag right now, and never ``live_run``, the run whose
    manifest is in the store (killed after writing it: it is a backup, not a leftover).
    """
    folder = _runs_dir(repo)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"{tag_id(tag)}-*.json")):
        _clean_run(cfg, store, tag, path, live_run)


def _clean_run(cfg: Config, store: Store, tag: str, path: Path, live_run: str | None) -> None:
    """Undo what the run whose journal is ``path`` left (see :func:`_clean_dead_runs`), then
    remove the journal; an error leaves it for the next run."""
    try:
        doc = json.loads(read_private(path))
        stamp = str(doc["stamp"])
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return
    removed = 0
    notes = doc.get("leftovers") if isinstance(doc.get("leftovers"), dict) else {}
    for kind_name, items in notes.items():
        if kind_name in kinds.registry() and isinstance(items, list):
            removed += kinds.get(kind_name).clean_leftovers(
                cfg, [str(i) for i in items])
    if stamp == live_run:
        path.unlink(missing_ok=True)
        return
    for folder_key in manifest.RUN_FOLDERS:
        run_prefix = f"{folder_key}{tag}_{stamp}"
        removed += store.clean_partial(run_prefix)
        for key in store.keys(folder_key):
            if from_attempt(run_prefix, key):
                store.delete(key)
                removed += 1
    if removed:
        say(f"removed {removed} leftover(s) of an interrupted snapshot of {tag} (run {stamp})")
    path.unlink(missing_ok=True)

