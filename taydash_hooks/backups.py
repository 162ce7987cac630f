"""`taydash backups list|show|verify` and `taydash restore db|vm|config`, over manifests."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from taydash_hooks import config as config_mod
from taydash_hooks import git, manifest, process
from taydash_hooks.config import Config, PostgresConfig, VictoriaMetricsConfig
from taydash_hooks.errors import Exit, refused, usage
from taydash_hooks.output import color, emit_json, say
from taydash_hooks.snapshot_postgres import corrupt_message
from taydash_hooks.snapshots import snapshot_timeout
from taydash_hooks.store import Store, open_store
from taydash_hooks.store.base import sha256_of


def open_repo_store(cwd: Path) -> tuple[git.Repo, Config, Store]:
    """The repository around ``cwd``, its configuration and its store."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    return repo, cfg, open_store(repo, cfg)


def list_backups(cwd: Path, as_json: bool) -> int:
    """One line per manifest: tag, time, commit, artifacts."""
    _, _, store = open_repo_store(cwd)
    docs = [manifest.require(store, t) for t in manifest.all_tags(store)]
    if as_json:
        emit_json([{"tag": d.get("tag"), "created": d.get("created"), "commit": d.get("commit"),
                    "artifacts": len(manifest.artifacts(d)),
                    "size": sum(a.get("size", 0) for a in manifest.artifacts(d))} for d in docs])
        return Exit.OK
    if not docs:
        say(f"taydash: no backups in {store.url}")
    for d in docs:
        kinds = ",".join(sorted({a.get("kind", "?") for a in manifest.artifacts(d)}))
        print(f"{d.get('tag')}\t{d.get('created')}\t{str(d.get('commit'))[:12]}\t{kinds}")
    return Exit.OK


def show(cwd: Path, tag: str, as_json: bool) -> int:
    _, _, store = open_repo_store(cwd)
    doc = manifest.require(store, tag)
    if as_json:
        emit_json(doc)
        return Exit.OK
    print(f"tag       {doc.get('tag')} ({doc.get('tag_object')})")
    print(f"commit    {doc.get('commit')}")
    print(f"tagger    {doc.get('tagger')}")
    print(f"created   {doc.get('created')}")
    print(f"store     {doc.get('store')}")
    for a in manifest.artifacts(doc):
        print(f"  {a.get('kind'):<16} {a.get('key')}  {a.get('size')} bytes  sha256 {a.get('sha256')}")
    return Exit.OK


def _hash_object(store: Store, key: str, version_id: str | None) -> str:
    with store.open(key, version_id) as fh:
        return sha256_of(fh)[0]


def check_artifact(cfg: Config, store: Store, art: dict[str, Any], deep: bool) -> str | None:
    """None when the artifact verifies, else the problem."""
    kind = art.get("kind")
    if kind == "victoriametrics":
        keys = set(store.keys(art["key"]))
        if f"{art['key']}backup_complete.ignore" not in keys:
            return "backup_complete.ignore is missing: the vmbackup did not finish"
        if deep:
            from taydash_hooks import snapshot_vm

            vcfg = (cfg.snapshots.victoriametrics if cfg.snapshots else None) or VictoriaMetricsConfig()
            with tempfile.TemporaryDirectory(prefix="taydash-verify-vm-") as tmp:
                try:
                    snapshot_vm.restore(vcfg, store, art, Path(tmp) / "data", snapshot_timeout())
                except Exception as exc:
                    return str(exc)
        return None
    got = _hash_object(store, art["key"], None)
    if got != art.get("sha256"):
        return corrupt_message(art, got)
    if art.get("sha256_key"):
        with store.open(art["sha256_key"]) as fh:
            sidecar = fh.read().decode("utf-8", "replace").split()
        if not sidecar or sidecar[0] != got:
            return f"{art['sha256_key']} does not agree with the object"
    if deep and kind == "postgres":
        with tempfile.TemporaryDirectory(prefix="taydash-verify-") as tmp:
            from taydash_hooks.snapshot_postgres import download_verified

            local = Path(tmp) / "dump"
            download_verified(store, art, local)
            pcfg = (cfg.snapshots.postgres if cfg.snapshots else None) or PostgresConfig()
            # Reading every data block to /dev/null catches a dump that hashes right but is broken.
            res = process.run([*pcfg.exec, "pg_restore", "--file=/dev/null", str(local)],
                              timeout=snapshot_timeout())
            if res.returncode != 0:
                return f"pg_restore cannot read the dump: {res.err.strip()[-200:]}"
    return None


def verify(cwd: Path, tag: str, deep: bool, as_json: bool) -> int:
    """Re-hash every artifact of ``tag``; exit 1 when one does not match."""
    _, cfg, store = open_repo_store(cwd)
    doc = manifest.require(store, tag)
    rows = []
    for art in manifest.artifacts(doc):
        try:
            problem = check_artifact(cfg, store, art, deep)
        except Exception as exc:  # a missing object is a failed check, not a crash
            problem = str(exc)
        rows.append({"kind": art.get("kind"), "key": art.get("key"), "ok": problem is None,
                     "problem": problem})
    if as_json:
        emit_json({"tag": tag, "ok": all(r["ok"] for r in rows), "artifacts": rows})
    else:
        for r in rows:
            mark = color("OK  ", "green", sys.stdout) if r["ok"] else color("FAIL", "red", sys.stdout)
            print(f"{mark} {r['kind']:<16} {r['key']}" + (f"  {r['problem']}" if r["problem"] else ""))
    return Exit.OK if all(r["ok"] for r in rows) else Exit.REFUSED


def _one(doc: dict[str, Any], kind: str, database: str | None = None) -> dict[str, Any]:
    arts = manifest.artifacts(doc, kind)
    if database is not None:
        arts = [a for a in arts if a.get("database") == database]
    if not arts:
        what = f"database {database}" if database else kind
        raise refused(f"the backup of {doc.get('tag')} has no {what} artifact.")
    if len(arts) > 1:
        names = ", ".join(str(a.get("database")) for a in arts)
        raise usage(f"the backup of {doc.get('tag')} holds several databases ({names}); "
                    "choose one with --database.")
    return arts[0]


def restore_db(cwd: Path, tag: str, target: str, database: str | None) -> int:
    from taydash_hooks import snapshot_postgres

    _, cfg, store = open_repo_store(cwd)
    pcfg = (cfg.snapshots.postgres if cfg.snapshots else None) or PostgresConfig()
    art = _one(manifest.require(store, tag), "postgres", database)
    say("taydash: " + snapshot_postgres.restore(pcfg, store, art, target, snapshot_timeout()))
    return Exit.OK


def restore_vm(cwd: Path, tag: str, dest: Path) -> int:
    from taydash_hooks import snapshot_vm

    _, cfg, store = open_repo_store(cwd)
    vcfg = (cfg.snapshots.victoriametrics if cfg.snapshots else None) or VictoriaMetricsConfig()
    art = _one(manifest.require(store, tag), "victoriametrics")
    say("taydash: " + snapshot_vm.restore(vcfg, store, art, dest, snapshot_timeout()))
    return Exit.OK


def restore_config(cwd: Path, tag: str, dest: Path) -> int:
    from taydash_hooks import snapshot_config

    _, _, store = open_repo_store(cwd)
    art = _one(manifest.require(store, tag), "config")
    say("taydash: " + snapshot_config.restore(store, art, dest, snapshot_timeout()))
    return Exit.OK
