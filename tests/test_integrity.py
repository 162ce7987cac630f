"""Backups that cannot lie: bound to their tag, every stored byte re-hashed, nothing extra passes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing.gitrepo import run
from testing.snap import Snap

ZERO_PART = "0000000000000005_0000000000000000_0000000000000005"


def _no_hooks(snap: Snap) -> dict[str, str]:
    return {**snap.env, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath",
            "GIT_CONFIG_VALUE_0": "/dev/null"}


def _readers_refuse(snap: Snap, tag: str, tmp_path: Path, fragment: str) -> None:
    for argv in (["backups", "verify", tag], ["backups", "verify", tag, "--deep"],
                 ["backups", "show", tag], ["backups", "show", tag, "--json"]):
        proc = snap.cli(*argv)
        assert proc.returncode == 1 and fragment in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr
    target = f"{snap.db}_wrong"
    proc = snap.cli("restore", "db", tag, "--target-db", target)
    assert proc.returncode == 1 and fragment in proc.stderr, proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
    for kind, flag in (("vm", "--storage-data-path"), ("config", "--dest")):
        dest = tmp_path / f"restored-{kind}"
        proc = snap.cli("restore", kind, tag, flag, str(dest))
        assert proc.returncode == 1 and fragment in proc.stderr, (kind, proc.stderr)
        assert not dest.exists() or not any(dest.iterdir())


def test_a_manifest_copied_over_another_tags_is_refused_by_every_reader(snap: Snap,
                                                                        tmp_path: Path) -> None:
    assert snap.tag("v0.9.0").returncode == 0
    snap.pg.psql("INSERT INTO readings VALUES (100001, 'new in v1')", db=snap.db)
    snap.repos.commit("v1 work")
    assert snap.tag("v1.0.0").returncode == 0
    assert snap.cli("backups", "verify", "v1.0.0").returncode == 0
    old = snap.raw_get("manifests/v0.9.0.json")
    # As copied: the manifest still names v0.9.0.
    snap.raw_put("manifests/v1.0.0.json", old)
    _readers_refuse(snap, "v1.0.0", tmp_path, "names tag 'v0.9.0', not 'v1.0.0'")
    # Renamed inside too: the tag object and commit still give it away.
    doc = json.loads(old)
    doc["tag"] = "v1.0.0"
    snap.raw_put("manifests/v1.0.0.json", json.dumps(doc).encode())
    _readers_refuse(snap, "v1.0.0", tmp_path, "was taken for tag object")
    health = snap.cli("health", "--json")
    assert "v1.0.0" in json.loads(health.stdout)["tags_without_backup"], health.stdout


def test_a_hostile_manifest_is_one_sentence_not_a_crash(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    doc = json.loads(snap.raw_get("manifests/v0.1.0.json"))
    for bad, fragment in (
        ({**doc, "artifacts": [{"kind": "postgres", "key": "../../etc/passwd", "size": 1,
                                "sha256": "0" * 64}]}, "not a plain relative key"),
        ({**doc, "artifacts": "nope"}, "artifacts is not a list"),
        ({**doc, "commit": 7}, "commit is not a string"),
    ):
        snap.raw_put("manifests/v0.1.0.json", json.dumps(bad).encode())
        proc = snap.cli("backups", "verify", "v0.1.0")
        assert proc.returncode == 1 and fragment in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    snap.raw_put("manifests/v0.1.0.json", b"[" * 100_000)
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr, proc.stderr


def test_a_recreated_tag_cannot_reuse_a_backed_up_name(snap: Snap) -> None:
    assert snap.tag("v1.1.0").returncode == 0
    first = snap.manifest("v1.1.0")["tag_object"]
    snap.repos.git("tag", "-d", "v1.1.0")
    snap.repos.commit("after the first v1.1.0")
    # At creation: refused, with the next free version.
    proc = snap.tag("v1.1.0")
    assert proc.returncode != 0
    assert "taken by a backup" in proc.stderr and "v1.1.1" in proc.stderr, proc.stderr
    assert snap.repos.git("tag", "--list", "v1.1.0").stdout.strip() == ""
    # Made without our hooks: the push refuses it, whatever on_push_missing says.
    for policy in ("warn", "block", "snapshot"):
        snap.repos.configure(snap.toml.replace('on_tag = ["v*"]',
                                               f'on_tag = ["v*"]\non_push_missing = "{policy}"'))
        snap.repos.git("tag", "-f", "-a", "-m", "again", "v1.1.0", env=_no_hooks(snap))
        proc = snap.repos.push("origin", "v1.1.0", env=snap.env)
        assert proc.returncode == 1, (policy, proc.stderr)
        assert "taken by a backup" in proc.stderr and "v1.1.1" in proc.stderr
        assert snap.repos.remote_ref("refs/tags/v1.1.0") is None
    # And verify refuses the old backup for the new tag.
    proc = snap.cli("backups", "verify", "v1.1.0")
    assert proc.returncode == 1 and "re-created" in proc.stderr, proc.stderr
    assert json.loads(snap.raw_get("manifests/v1.1.0.json"))["tag_object"] == first


def test_verify_rehashes_every_vm_file_without_deep(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "victoriametrics")
    files = art["files"]
    assert isinstance(files, dict)
    proc = snap.cli("backups", "verify", "v0.1.0", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"]
    # every VM file, the dump, the roles script, the config bundle, the checksum list
    assert report["files"] == len(files) + 4
    assert report["bytes"] >= sum(f["size"] for f in files.values())
    assert f"re-hashed {len(files) + 4} file(s)" in snap.cli("backups", "verify", "v0.1.0").stderr
    # One flipped byte in the largest stored part, same size: only a re-hash sees it.
    prefix = str(art["key"])
    parts = [k for k in snap.raw_keys(prefix) if not k.endswith(".ignore")]
    victim = max(parts, key=lambda k: len(snap.raw_get(k)))
    data = bytearray(snap.raw_get(victim))
    data[len(data) // 2] ^= 0x01
    snap.raw_put(victim, bytes(data))
    proc = snap.cli("backups", "verify", "v0.1.0")
    rel = victim[len(prefix):].rpartition("/")[0]
    assert proc.returncode == 1 and rel in proc.stdout and "does not match" in proc.stdout


def test_an_injected_vm_part_fails_verify_and_restore(snap: Snap, tmp_path: Path) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    prefix = str(snap.artifact("v0.1.0", "victoriametrics")["key"])
    # Another instance's data part, next to ours under the backup's prefix.
    key = f"{prefix}data/small/2099_01/injected_part/values.bin/{ZERO_PART}"
    snap.raw_put(key, b"hello")
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1, proc.stdout
    assert "data/small/2099_01/injected_part/values.bin is in the store but not in the manifest" \
        in proc.stdout
    dest = tmp_path / "vm"
    proc = snap.cli("restore", "vm", "v0.1.0", "--storage-data-path", str(dest))
    assert proc.returncode == 1 and "not in the manifest" in proc.stderr, proc.stderr
    assert not dest.exists() or not any(dest.iterdir())
    # A stray object that is no vmbackup part at all fails too.
    snap.raw_put(f"{prefix}notes.txt", b"x")
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1 and "notes.txt is in the store but is no vmbackup part" in proc.stdout


def test_restore_db_refuses_a_conninfo_target(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    for target in (f"dbname={snap.db}", "postgresql://localhost/prod", "two words", ""):
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
        assert proc.returncode == 2 and "not a plain database name" in proc.stderr, proc.stderr
    assert snap.pg.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'dbname=%'") == "0"


def test_two_runs_of_one_tag_at_once_never_both_claim_done(snap: Snap, tmp_path: Path) -> None:
    other = tmp_path / "other"
    # A barrier in the exec prefix: each run's dump waits until the other's has started too,
    # so the two runs overlap every round, not only when the machine happens to be fast.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    hold = (f'case "$*" in *--schema-only*) ;; *" pg_dump "*" -Fc "*) : > {barrier}/$$; n=0; '
            f'while [ "$(ls {barrier} | wc -l)" -lt 2 ] && [ $n -lt 1200 ]; do sleep 0.05; '
            'n=$((n+1)); done ;; esac; exec "$@"')
    snap.repos.configure(snap.toml.replace("[snapshots.postgres]\n", "[snapshots.postgres]\n"
                                           f'exec = ["sh", "-c", {json.dumps(hold)}, "hold"]\n'))
    for round_ in range(3):
        tag = f"v0.{round_ + 1}.0"
        snap.repos.commit(f"round {round_}")
        assert snap.tag(tag, env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
        snap.repos.push("--no-verify", "origin", "main", tag)
        if not other.exists():
            run("git", "clone", "-q", str(snap.repos.remote), other)
        run("git", "fetch", "-q", "--tags", "origin", cwd=other)
        run("git", "merge", "-q", "--ff-only", "origin/main", cwd=other)
        # Two clones: two state dirs, so the local lock does not serialise them.
        procs = [subprocess.Popen([sys.executable, "-m", "taydash_hooks", "snapshot", tag],
                                  cwd=cwd, env=snap.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for cwd in (snap.repos.work, other)]
        outs = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
        assert len(list(barrier.iterdir())) == 2, outs  # both dumps ran at the same time
        for marker in barrier.iterdir():
            marker.unlink()
        done = [err for code, err in outs if code == 0 and f"snapshot of {tag} done" in err]
        assert len(done) <= 1, outs
        for code, err in outs:
            assert code == 0 or "another run owns" in err, err
        assert any(f"snapshot of {tag} done" in err for _, err in outs) or \
            all("already has a backup" in err for code, err in outs if code == 0), outs
        verify = snap.cli("backups", "verify", tag)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # The loser's rollback removed its own objects only: nothing but the manifest's.
        doc = snap.manifest(tag)
        listed = {str(a["key"]) for a in doc["artifacts"]} | \
            {str(a["sha256_key"]) for a in doc["artifacts"] if a.get("sha256_key")}
        stored = {k for k in snap.raw_keys("db-backups/") + snap.raw_keys("config-backups/")
                  if f"/{tag}_" in f"/{k.split('/', 1)[1]}"}
        assert stored == {k for k in listed if not k.startswith("vm-backups/")}
        vm_key = next(str(a["key"]) for a in doc["artifacts"] if a["kind"] == "victoriametrics")
        vm_prefixes = {k.split("/")[1] for k in snap.raw_keys("vm-backups/")
                       if k.split("/")[1].startswith(f"{tag}_")}
        assert vm_prefixes == {vm_key.split("/")[1]}
        if not snap.is_file:
            client, bucket, prefix = snap._s3()
            versions = [o for o in client.list_objects(  # type: ignore[attr-defined]
                bucket, f"{prefix}/manifests/{tag}.json", include_version=True)]
            assert len(versions) == 1  # created once, never overwritten


def test_a_dead_runs_leftovers_are_removed_by_the_next_run_and_no_one_elses(snap: Snap) -> None:
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    # Another machine's run is writing this tag right now: its object must survive.
    foreign = "db-backups/v0.1.0_20990101_000000-0badc0de.dump"
    snap.raw_put(foreign, b"someone else's dump in progress")
    # A VictoriaMetrics that accepts and never answers: our run stores its dump, then
    # waits there, where it is killed (SIGKILL: no rollback runs).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        snap.repos.configure(snap.toml.replace(f'url = "{snap.vm.url}"', f'url = "{url}"'))
        proc = subprocess.Popen([sys.executable, "-m", "taydash_hooks", "snapshot", "v0.1.0",
                                 "--only", "postgres,victoriametrics"],
                                cwd=snap.repos.work, env=snap.env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not [k for k in snap.raw_keys("db-backups/")
                   if k != foreign and "/v0.1.0_" in f"/{k[11:]}"]:
            assert proc.poll() is None and time.monotonic() < deadline, "the dump never stored"
            time.sleep(0.05)
        # The run is waiting on VictoriaMetrics when its connection is pending here.
        silent.settimeout(60)
        waiting, _ = silent.accept()
        proc.kill()
        waiting.close()
        proc.wait()
    runs = snap.repos.work / ".git" / "taydash" / "runs"
    assert list(runs.glob("*.json"))  # the dead run's journal
    orphans = [k for k in snap.raw_keys("db-backups/") if k != foreign]
    assert orphans  # its dump, stored without a manifest
    snap.repos.configure(snap.toml)
    rerun = snap.cli("snapshot", "v0.1.0")
    assert rerun.returncode == 0, rerun.stderr
    assert "leftover(s) of an interrupted snapshot" in rerun.stderr
    assert snap.cli("backups", "verify", "v0.1.0").returncode == 0
    doc = snap.manifest("v0.1.0")
    ours = {str(a["key"]) for a in doc["artifacts"]} | {str(a.get("sha256_key")) for a in doc["artifacts"]}
    left = [k for k in snap.raw_keys("db-backups/") if k not in ours]
    assert left == [foreign]
    assert not set(orphans) & set(snap.raw_keys("db-backups/"))
    assert not list(runs.glob("*.json"))


# S3 has no file modes (its access is the bucket's policy): only the file store is asked.
@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_every_file_a_snapshot_leaves_in_a_file_store_is_private(snap: Snap, tmp_path: Path) -> None:
    assert snap.is_file
    old = os.umask(0o022)
    try:
        assert snap.tag("v0.1.0").returncode == 0
    finally:
        os.umask(old)
    root = Path(snap.store_url[len("file://"):])
    paths = [root, *root.rglob("*")]
    assert any("vm-backups" in str(p) for p in paths)  # vmbackup's own files too
    for p in paths:
        want = 0o700 if p.is_dir() else 0o600
        assert p.stat().st_mode & 0o777 == want, p
    # taydash's own state in the clone too: journals, records, logs, caches.
    state = snap.repos.work / ".git" / "taydash"
    for p in [state, *state.rglob("*")]:
        if p.is_dir():
            assert p.stat().st_mode & 0o777 == 0o700, p
        elif p.is_file():
            assert p.stat().st_mode & 0o077 == 0, p
    proc = snap.cli("doctor")
    assert "readable by other users" not in proc.stdout
    (root / "manifests" / "v0.1.0.json").chmod(0o644)
    proc = snap.cli("doctor")
    assert "FAIL store" in proc.stdout and "readable by other users" in proc.stdout
    assert f"chmod -R go-rwx {root}" in proc.stdout


def test_verify_all_and_last_n_one_line_each(snap: Snap) -> None:
    for tag in ("v0.1.0", "v0.2.0", "v0.3.0"):
        snap.repos.commit(tag)
        assert snap.tag(tag).returncode == 0
    proc = snap.cli("backups", "verify", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [ln.split()[:2] for ln in proc.stdout.splitlines()] == [
        ["ok", "v0.3.0"], ["ok", "v0.2.0"], ["ok", "v0.1.0"]]
    assert "verified 3 backups: 3 ok, 0 FAILED" in proc.stderr
    art = snap.artifact("v0.2.0", "postgres")
    snap.raw_put(str(art["key"]), b"flipped")
    proc = snap.cli("backups", "verify", "--all", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["failed"] == ["v0.2.0"] and doc["verified"] == 3
    proc = snap.cli("backups", "verify", "--last", "1")
    assert proc.returncode == 0 and proc.stdout.split()[:2] == ["ok", "v0.3.0"]
    assert snap.cli("backups", "verify").returncode == 2  # one of TAG, --all, --last N


def test_deep_verify_lists_the_config_bundle(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    proc = snap.cli("backups", "verify", "v0.1.0", "--deep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if " config " in ln)
    assert "holds .env" in line and "infra/app.conf" in line


def test_deep_verify_reads_a_dump_that_hashes_right_but_is_cut(snap: Snap) -> None:
    """A dump cut in the middle, stored with a matching hash (what someone who can write the
    store, or a pg_dump killed at the wrong moment by hand, leaves): the hash passes, the one
    pass of --deep through pg_restore does not."""
    import zstandard

    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    key = str(art["key"])
    stored = snap.raw_get(key)
    zst = key.endswith(".zst")
    plain = zstandard.ZstdDecompressor().decompressobj().decompress(stored) if zst else stored
    cut = plain[: len(plain) * 2 // 3]
    snap.forge("v0.1.0", key, zstandard.ZstdCompressor().compress(cut) if zst else cut)
    shallow = snap.cli("backups", "verify", "v0.1.0")
    assert shallow.returncode == 0, shallow.stdout + shallow.stderr  # every hash matches
    deep = snap.cli("backups", "verify", "v0.1.0", "--deep")
    assert deep.returncode == 1, deep.stdout + deep.stderr
    assert "pg_restore cannot read the dump" in deep.stdout
