"""Retention: prune by policy, delete by hand, never the newest release, never a locked object."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from testing import clock, keys, services
from testing.gitrepo import Repos
from testing.snap import Snap


def _backups(snap: Snap) -> list[str]:
    return [d["tag"] for d in json.loads(snap.cli("backups", "list", "--json").stdout)]


def _keys_of(snap: Snap, tag: str) -> list[str]:
    return [k for prefix in ("db-backups/", "vm-backups/", "config-backups/", "manifests/")
            for k in snap.raw_keys(prefix) if f"/{tag}_" in f"/{k.split('/', 1)[1]}"
            or k == f"manifests/{tag}.json"]


def _versions(snap: Snap, key: str) -> list[object]:
    client, bucket, prefix = snap._s3()
    return [o for o in client.list_objects(bucket, f"{prefix}/{key}",  # type: ignore[attr-defined]
                                           recursive=True, include_version=True)]


def test_prune_keeps_by_rule_and_the_newest_release(snap: Snap) -> None:
    # A minute apart (the clock faked): "last N" is well defined. The newest release is the
    # oldest backup.
    for n, tag in enumerate(("v0.9.0", "v0.2.0", "v0.3.0")):
        snap.repos.commit(tag)
        assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0
    removed = _keys_of(snap, "v0.2.0")
    assert removed
    proc = snap.cli("backups", "prune", "--keep-last", "1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "keep 2 backups:" in proc.stdout and "would remove 1 backup:" in proc.stdout
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("v0.")}
    assert "last 1" in rows["v0.3.0"] and "newest release" in rows["v0.9.0"]
    assert _backups(snap) == ["v0.2.0", "v0.3.0", "v0.9.0"]  # a dry run removes nothing
    proc = snap.cli("backups", "prune", "--keep-last", "1")  # no terminal to ask, no --yes
    assert proc.returncode == 1, proc.stderr
    assert "nothing was removed: there is no terminal to confirm on; pass --yes" in proc.stderr
    assert "would remove 1 backup:" in proc.stdout and "[y/N]" not in proc.stderr  # no prompt
    assert _backups(snap) == ["v0.2.0", "v0.3.0", "v0.9.0"]
    proc = snap.cli("backups", "prune", "--keep-last", "1", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "removed v0.2.0" in proc.stderr
    assert _backups(snap) == ["v0.3.0", "v0.9.0"]
    assert _keys_of(snap, "v0.2.0") == []
    if not snap.is_file:  # space is reclaimed: no version of its objects is left, no marker only
        for key in removed:
            assert _versions(snap, key) == [], key
    assert snap.cli("backups", "verify", "v0.3.0").returncode == 0
    assert snap.cli("backups", "prune").returncode == 2  # no rule: refused, not "remove all"


def test_retention_defaults_come_from_the_config(snap: Snap) -> None:
    for n, tag in enumerate(("v0.1.0", "v0.2.0")):
        snap.repos.commit(tag)
        assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0
    snap.repos.configure(snap.toml + "[snapshots.retention]\nkeep_within = \"1h\"\n")
    proc = snap.cli("backups", "prune")
    assert proc.returncode == 0 and "nothing to remove" in proc.stderr, proc.stdout + proc.stderr
    assert "within 1h" in proc.stdout


def test_delete_one_backup_and_never_the_newest(snap: Snap) -> None:
    for tag in ("v0.1.0", "v0.2.0"):
        snap.repos.commit(tag)
        assert snap.tag(tag).returncode == 0
    proc = snap.cli("backups", "delete", "v0.2.0", "--yes")
    assert proc.returncode == 1 and "newest release with a backup" in proc.stderr
    proc = snap.cli("backups", "delete", "v0.1.0")  # no terminal to ask: nothing happens
    assert proc.returncode == 1 and _backups(snap) == ["v0.1.0", "v0.2.0"]
    proc = snap.cli("backups", "delete", "v0.1.0", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert _backups(snap) == ["v0.2.0"] and _keys_of(snap, "v0.1.0") == []
    assert snap.cli("backups", "verify", "v0.1.0").returncode == 1  # no longer a backup


def test_an_interrupted_delete_is_finished_by_the_next_run(snap: Snap) -> None:
    for tag in ("v0.1.0", "v0.2.0"):
        snap.repos.commit(tag)
        assert snap.tag(tag).returncode == 0
    # What a delete killed after removing the manifest leaves: its tombstone and its artifacts.
    doc = snap.raw_get("manifests/v0.1.0.json")
    snap.raw_put("trash/v0.1.0.json", doc)
    if snap.is_file:
        (Path(snap.store_url[len("file://"):]) / "manifests" / "v0.1.0.json").unlink()
    else:
        client, bucket, _ = snap._s3()
        for o in _versions(snap, "manifests/v0.1.0.json"):
            client.remove_object(bucket, o.object_name, version_id=o.version_id)  # type: ignore[attr-defined]
    assert _backups(snap) == ["v0.2.0"]  # from the manifest's removal on, it is gone
    assert [k for k in _keys_of(snap, "v0.1.0") if not k.startswith("manifests/")]
    proc = snap.cli("backups", "prune", "--keep-last", "5", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "finished removing v0.1.0" in proc.stderr
    assert _keys_of(snap, "v0.1.0") == [] and snap.raw_keys("trash/") == []


def test_object_lock_keeps_a_backup_whole(repos: Repos, postgres: services.Postgres,
                                          vm: services.VictoriaMetrics, gnupghome: keys.Keyring,
                                          s3: services.S3Server) -> None:
    bucket = f"taydash-locked-{secrets.token_hex(4)}"
    s3.client().make_bucket(bucket, object_lock=True)
    snap = Snap(repos, postgres, vm, f"s3://{bucket}/backups", s3, {**os.environ, **s3.env()})
    snap.repos.configure(snap.toml.replace('region = "us-east-1"\n',
                                           'region = "us-east-1"\nobject_lock_days = 1\n'))
    try:
        for n, tag in enumerate(("v0.1.0", "v0.2.0")):
            snap.repos.commit(tag)
            assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0, tag
        before = _keys_of(snap, "v0.1.0")
        proc = snap.cli("backups", "prune", "--keep-last", "1", "--yes")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "kept v0.1.0: its objects are under Object Lock until" in proc.stderr
        assert _backups(snap) == ["v0.1.0", "v0.2.0"] and _keys_of(snap, "v0.1.0") == before
        assert snap.cli("backups", "verify", "v0.1.0").returncode == 0  # left whole
        proc = snap.cli("backups", "delete", "v0.1.0", "--yes")
        assert proc.returncode == 1 and "Object Lock" in proc.stderr
    finally:
        postgres.drop_db(snap.db)


def test_a_partial_backup_is_said_everywhere_and_may_be_deleted(snap: Snap) -> None:
    snap.repos.commit("v0.1.0")
    assert snap.tag("v0.1.0").returncode == 0
    snap.repos.commit("v0.2.0")
    assert snap.tag("v0.2.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.2.0", "--only", "victoriametrics")
    assert proc.returncode == 0 and "a partial backup" in proc.stderr, proc.stderr
    doc = snap.manifest("v0.2.0")
    assert doc["partial"] is True and doc["missing_kinds"] == ["postgres", "config"]
    proc = snap.cli("backups", "verify", "v0.2.0")
    assert proc.returncode == 1 and "lacks postgres, config" in proc.stdout
    health = json.loads(snap.cli("health", "--json").stdout)
    assert health["partial_backups"] == ["v0.2.0"]
    # The newest release, but partial: it may go, so a full one can be taken.
    proc = snap.cli("backups", "delete", "v0.2.0", "--yes")
    assert proc.returncode == 0, proc.stderr
    proc = snap.cli("snapshot", "v0.2.0")
    assert proc.returncode == 0, proc.stderr
    assert "partial" not in snap.manifest("v0.2.0")
    assert snap.cli("backups", "verify", "v0.2.0").returncode == 0
    assert snap.cli("backups", "delete", "v0.2.0", "--yes").returncode == 1  # full: kept


def test_pruned_tags_are_pruned_not_missing_and_promoted_versions_go_too(snap: Snap) -> None:
    for n, tag in enumerate(("v0.1.0", "v0.2.0")):
        snap.repos.commit(tag)
        assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0
    if not snap.is_file:
        # The recovery verify suggests for a replaced object: promote the recorded version.
        art = snap.artifact("v0.1.0", "postgres")
        key = str(art["key"])
        snap.raw_put(key, b"replaced behind our back")
        proc = snap.cli("objects", "promote", key, "--version-id", str(art["version_id"]))
        assert proc.returncode == 0, proc.stderr
        mine = [o for o in _versions(snap, key) if o.object_name.endswith(key)]  # type: ignore[attr-defined]
        assert len(mine) == 3  # original, replacement, promoted copy
    proc = snap.cli("backups", "prune", "--keep-last", "1", "--yes")
    assert proc.returncode == 0, proc.stderr
    if not snap.is_file:
        assert _versions(snap, key) == []  # the promoted version went with its backup
    health = json.loads(snap.cli("health", "--json").stdout)
    assert health["pruned_tags"] == ["v0.1.0"] and "v0.1.0" not in health["tags_without_backup"]
    orphans = json.loads(snap.cli("backups", "list", "--orphans", "--json").stdout)
    assert orphans == []


def test_a_drill_after_a_prune_passes_and_lists_the_pruned_tags(snap: Snap) -> None:
    for n, tag in enumerate(("v0.1.0", "v0.2.0", "v0.3.0")):
        snap.repos.commit(tag)
        assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0
    assert snap.repos.push("origin", "main", "--tags", env=snap.env).returncode == 0  # drilled
    assert snap.cli("backups", "prune", "--keep-last", "1", "--yes").returncode == 0
    proc = snap.cli("drill", "--last", "3", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert [t["tag"] for t in doc["tags"]] == ["v0.3.0"] and doc["ok"] is True
    assert doc["pruned"] == ["v0.2.0", "v0.1.0"]
    # Only the pruned among the newest N are listed: where the drill would have looked.
    assert json.loads(snap.cli("drill", "--last", "2", "--json").stdout)["pruned"] == ["v0.2.0"]
    text = snap.cli("drill", "--last", "2").stdout
    assert re.search(r"^v0\.2\.0 +pruned \(", text, re.M), text
    health = json.loads(snap.cli("health", "--json").stdout)
    assert health["pruned_tags"] == ["v0.2.0", "v0.1.0"] and health["tags_without_backup"] == []
    # The store writer plants a retention record for the newest tag, which has no backup:
    # it would hide the missing backup. Retention never removes the newest: not believed.
    snap.repos.commit("v0.4.0")
    skip = {**snap.env, "TAYDASH_SKIP": "snapshot"}
    assert snap.tag("v0.4.0", env=clock.shifted(skip, 180)).returncode == 0
    assert snap.repos.push("origin", "main", "v0.4.0", env=skip).returncode == 0
    snap.raw_put("retention/v0.4.0.json", b'{"tag": "v0.4.0", "run": "x", "removed": "2026-01-01"}')
    proc = snap.cli("drill", "--last", "1", "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert [t["tag"] for t in doc["tags"]] == ["v0.4.0"] and doc["pruned"] == []
    health = json.loads(snap.cli("health", "--json").stdout)
    assert health["tags_without_backup"] == ["v0.4.0"] and "v0.4.0" not in health["pruned_tags"]
    assert any("retention record says the backup of v0.4.0 was pruned" in w
               for w in health["warnings"])


def test_last_n_of_backups_made_in_one_second_keeps_the_higher_versions() -> None:
    from taydash_hooks.snapshots.manifest import Manifest
    from taydash_hooks.snapshots.retention import Policy, plan

    # A script that tags twice in one second: the manifests' times (to the second) are equal.
    same = "2026-12-07T10:00:00+00:00"
    docs = [Manifest(tag, "0" * 40, "1" * 40, (), created=same)
            for tag in ("v0.9.0", "v0.10.0", "v0.2.0")]
    older = Manifest("v0.11.0", "0" * 40, "1" * 40, (), created="2026-12-07T09:59:59+00:00")
    for listed in ([*docs, older], [*reversed(docs), older], [older, *docs[1:], docs[0]]):
        kept = [d.doc.tag for d in plan(listed, Policy(keep_last=2)) if "last 2" in d.reasons]
        # Whatever order the store lists them in (by name, v0.10.0 before v0.9.0).
        assert kept == ["v0.10.0", "v0.9.0"], listed
