"""The store is someone else: whoever can write it may have forged what is in it.

Each test plays the store writer (a leaked key, a compromised runner) against real
services, and checks that the operator's own commands do not believe the forgery.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import clock, keys, services
from testing.gitrepo import Repos, run
from testing.snap import Snap


def _signing(snap: Snap, ring: keys.Keyring, mode: str = "auto") -> str:
    """Manifests signed with the trusted key, which the [tags] policy allows."""
    fpr = ring.keys["trusted"].fingerprint
    snap.repos.write(".taydash/keys.asc", ring.export("trusted"))
    snap.repos.git("config", "user.signingkey", fpr)
    toml = snap.toml.replace("[snapshots]\n", f'[snapshots]\nsigned_manifests = "{mode}"\n', 1)
    snap.repos.configure(toml + f'[tags]\nrequire_signed = false\nopenpgp_fingerprints = ["{fpr}"]\n')
    return fpr


def test_a_snapshot_signs_its_manifest_and_every_reader_checks_it(
        snap: Snap, gnupghome: keys.Keyring, tmp_path: Path) -> None:
    fpr = _signing(snap, gnupghome)
    assert snap.tag("v0.1.0").returncode == 0
    assert "manifests/v0.1.0.json.sig" in snap.raw_keys("manifests/")
    # Checkable by hand, with gpg alone.
    (tmp_path / "m.json").write_bytes(snap.raw_get("manifests/v0.1.0.json"))
    (tmp_path / "m.json.sig").write_bytes(snap.raw_get("manifests/v0.1.0.json.sig"))
    by_hand = run("gpg", "--verify", tmp_path / "m.json.sig", tmp_path / "m.json", check=False)
    assert by_hand.returncode == 0, by_hand.stderr
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0 and f"signed by {fpr} (allowed)" in proc.stderr, proc.stderr
    listed = json.loads(snap.cli("backups", "list", "--json").stdout)
    assert listed[0]["manifest"] == f"signed by {fpr} (allowed)"
    # The store writer rewrites a dump, its hash and size in the manifest, consistently.
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP forged", compressed="")
    vm_into, config_into = tmp_path / "vm", tmp_path / "config"
    for args in (["backups", "verify", "v0.1.0"],
                 ["restore", "db", "v0.1.0", "--target-db", f"{snap.db}_forged"],
                 ["restore", "vm", "v0.1.0", "--storage-data-path", str(vm_into)],
                 ["restore", "config", "v0.1.0", "--dest", str(config_into)],
                 ["drill", "--last", "1"],
                 ["backups", "show", "v0.1.0"]):
        proc = snap.cli(*args)
        said = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "signature rejected" in said, (args, said)
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{snap.db}_forged'") == "0"
    assert not any(vm_into.glob("*")) and not any(config_into.glob("*"))
    listed = json.loads(snap.cli("backups", "list", "--json").stdout)
    assert listed[0]["tag"] == "v0.1.0" and "rejected" in listed[0]["manifest"], listed


def test_required_refuses_an_unsigned_manifest_and_auto_warns(snap: Snap,
                                                              gnupghome: keys.Keyring) -> None:
    _signing(snap, gnupghome, "required")
    assert snap.tag("v0.1.0").returncode == 0
    snap.raw_delete("manifests/v0.1.0.json.sig")  # the writer drops the signature instead
    for args in (["backups", "verify", "v0.1.0"],
                 ["restore", "db", "v0.1.0", "--target-db", f"{snap.db}_unsigned"]):
        proc = snap.cli(*args)
        assert proc.returncode == 1 and "unsigned" in proc.stderr and "required" in proc.stderr
    _signing(snap, gnupghome, "auto")
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0 and "WARNING: the manifest of v0.1.0 is unsigned" in proc.stderr


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_where_tags_are_signed_manifests_are_required_by_default(snap: Snap,
                                                                gnupghome: keys.Keyring) -> None:
    """signed_manifests not set: a store writer who strips the .sig and forges a dump is
    refused where [tags] requires signed tags, and only warned about where it does not."""
    fpr = gnupghome.keys["trusted"].fingerprint
    snap.repos.write(".taydash/keys.asc", gnupghome.export("trusted"))
    signed_tags = snap.toml + f'[tags]\nopenpgp_fingerprints = ["{fpr}"]\n'
    snap.repos.configure(signed_tags)
    # No key to sign with: the snapshot says so in one sentence, with both ways out.
    env = {**snap.env, "TAYDASH_SKIP": "snapshot"}
    assert snap.repos.git("tag", "-s", "-u", fpr, "-m", "r", "v0.1.0", env=env,
                          check=False).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 2, proc.stderr
    assert "required\" by default" in proc.stderr and "user.signingkey" in proc.stderr
    assert 'signed_manifests = "auto"' in proc.stderr and snap.raw_keys("") == []
    snap.repos.git("config", "user.signingkey", fpr)
    assert snap.cli("snapshot", "v0.1.0").returncode == 0
    # The writer strips the signature and forges the dump to match the manifest.
    dump = str(snap.artifact("v0.1.0", "postgres")["key"])
    snap.raw_delete("manifests/v0.1.0.json.sig")
    snap.forge("v0.1.0", dump, b"PGDMP forged", compressed="")
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1 and "unsigned" in proc.stderr and "required" in proc.stderr
    # Where tags are not signed, "auto" stays the default: unsigned is a warning there.
    snap.repos.configure(signed_tags.replace("[tags]\n", "[tags]\nrequire_signed = false\n"))
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert "WARNING: the manifest of v0.1.0 is unsigned" in proc.stderr, proc.stderr
    # A value set in the file wins.
    snap.repos.configure(signed_tags.replace("[snapshots]\n",
                                             '[snapshots]\nsigned_manifests = "auto"\n', 1))
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert "WARNING: the manifest of v0.1.0 is unsigned" in proc.stderr, proc.stderr


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_retention_records_are_signed_and_a_removed_run_put_back_is_refused(
        snap: Snap, gnupghome: keys.Keyring) -> None:
    """A record that a backup was pruned silences the missing-backup alert, and an old signed
    manifest put back after its deletion would restore old data: records are signed like
    manifests, a forged one is reported and not believed, and a removed run stays removed."""
    _signing(snap, gnupghome, "required")
    for n, tag in enumerate(("v0.1.0", "v0.1.5", "v0.2.0")):
        snap.repos.commit(tag)
        env = {**snap.env, "TAYDASH_SKIP": "snapshot"} if tag == "v0.1.5" else snap.env
        assert snap.tag(tag, env=clock.shifted(env, 60 * n)).returncode == 0
    old = {k: snap.raw_get(k) for k in snap.raw_keys("") if "v0.1.0" in k}
    old_run = str(snap.manifest("v0.1.0")["run"])
    assert snap.cli("backups", "prune", "--keep-last", "1", "--yes").returncode == 0
    assert sorted(snap.raw_keys("retention/")) == [f"retention/v0.1.0/{old_run}.json",
                                                   f"retention/v0.1.0/{old_run}.json.sig"]
    health = json.loads(snap.cli("health", "--json").stdout)
    assert health["pruned_tags"] == ["v0.1.0"] and health["tags_without_backup"] == ["v0.1.5"]
    # The writer plants records for v0.1.5, which never had a backup: junk, unsigned, and one
    # signed by a key of its own. None is believed; each is said.
    snap.raw_put("retention/v0.1.5.json", b"junk")
    forged = json.dumps({"tag": "v0.1.5", "run": "r1", "removed": "2026-01-01T00:00:00+00:00"})
    snap.raw_put("retention/v0.1.5/r1.json", forged.encode())
    snap.raw_put("retention/v0.1.5/r2.json", forged.replace("r1", "r2").encode())
    snap.raw_put("retention/v0.1.5/r2.json.sig", gnupghome.gpg(
        "--armor", "--detach-sign", "--local-user", gnupghome.keys["untrusted"].fingerprint,
        input=forged.replace("r1", "r2")).encode())
    # And v0.1.0's genuine record, signed by the allowed key, copied under v0.1.5's name.
    copied = f"retention/v0.1.5/{old_run}.json"
    for suffix in ("", ".sig"):
        snap.raw_put(copied + suffix, snap.raw_get(f"retention/v0.1.0/{old_run}.json{suffix}"))
    health = json.loads(snap.cli("health", "--json").stdout)
    assert health["tags_without_backup"] == ["v0.1.5"] and health["pruned_tags"] == ["v0.1.0"]
    said = " | ".join(health["warnings"])
    for key in ("retention/v0.1.5.json", "retention/v0.1.5/r1.json", "retention/v0.1.5/r2.json",
                copied):
        assert f"{key}: not believed" in said, said
    drill = snap.cli("drill", "--last", "3", "--json")
    assert drill.returncode == 1 and json.loads(drill.stdout)["pruned"] == ["v0.1.0"]
    # v0.1.0 is taken again; then the old run's signed manifest and data are put back.
    assert snap.cli("snapshot", "v0.1.0").returncode == 0
    assert snap.cli("backups", "verify", "v0.1.0").returncode == 0
    for key, data in old.items():
        snap.raw_put(key, data)
    assert json.loads(snap.raw_get("manifests/v0.1.0.json"))["run"] == old_run
    for args in (["backups", "verify", "v0.1.0"],
                 ["restore", "db", "v0.1.0", "--target-db", f"{snap.db}_rolled_back"]):
        proc = snap.cli(*args)
        assert proc.returncode == 1 and "rollback" in proc.stderr, (args, proc.stderr)
    # Every reader of many backups at once judges it the same way (one Judge for all).
    proc = snap.cli("backups", "verify", "--all", "--json")
    rows = {b["tag"]: b for b in json.loads(proc.stdout)["backups"]}
    assert proc.returncode == 1 and rows["v0.1.0"]["result"] == "failed", proc.stdout
    assert "rollback" in rows["v0.1.0"]["detail"] and rows["v0.2.0"]["result"] == "ok"
    drilled = {t["tag"]: {c["name"]: c for c in t["checks"]}
               for t in json.loads(snap.cli("drill", "--last", "3", "--json").stdout)["tags"]}
    artifacts = drilled["v0.1.0"]["artifacts"]
    assert artifacts["result"] == "FAIL" and "rollback" in artifacts["detail"], artifacts
    assert drilled["v0.1.0"]["db restore"]["result"] == "n/a"  # the old data was not restored
    assert drilled["v0.2.0"]["db restore"]["result"] == "pass"
    assert snap.pg.psql(
        f"SELECT count(*) FROM pg_database WHERE datname = '{snap.db}_rolled_back'") == "0"


def test_roles_come_only_from_a_manifest_an_allowed_key_signed(snap: Snap,
                                                               gnupghome: keys.Keyring) -> None:
    _signing(snap, gnupghome, "auto")
    assert snap.tag("v0.1.0").returncode == 0
    target = f"{snap.db}_roles"
    # Signed by the allowed key: the roles script is applied, no trust flag needed.
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--with-roles")
    try:
        assert proc.returncode == 0, proc.stderr
        assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "1"
    finally:
        snap.pg.drop_db(target)
    # The store writer signs the same manifest with a key of its own: not believed at all.
    doc = snap.raw_get("manifests/v0.1.0.json").decode()
    forged = gnupghome.gpg("--armor", "--detach-sign", "--local-user",
                           gnupghome.keys["untrusted"].fingerprint, input=doc)
    snap.raw_put("manifests/v0.1.0.json.sig", forged.encode())
    for flags in ([], ["--trust-unsigned-roles"]):
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--with-roles", *flags)
        assert proc.returncode == 1 and "signature rejected" in proc.stderr, proc.stderr
        assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
    # Unsigned: the roles script only on the operator's word.
    snap.raw_delete("manifests/v0.1.0.json.sig")
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--with-roles")
    assert proc.returncode == 1 and "--trust-unsigned-roles" in proc.stderr, proc.stderr
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--with-roles",
                    "--trust-unsigned-roles")
    try:
        assert proc.returncode == 0, proc.stderr
    finally:
        snap.pg.drop_db(target)


def test_required_with_a_key_that_cannot_sign_stores_nothing(snap: Snap,
                                                             tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-C", "locked", "-f", locked)
    snap.repos.git("config", "gpg.format", "ssh")
    snap.repos.git("config", "user.signingkey", str(locked))
    snap.repos.configure(snap.toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = '
                                           '"required"\n', 1))
    env = {k: v for k, v in snap.env.items() if k not in ("SSH_AUTH_SOCK", "DISPLAY")}
    assert snap.tag("v0.1.0", env={**env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0", env=env)
    assert proc.returncode == 3, proc.stderr
    assert "cannot sign without a terminal" in proc.stderr and "Nothing was stored" in proc.stderr
    assert snap.raw_keys("") == []


def test_ssh_signed_manifests_verify_by_hand(snap: Snap, ssh_keys: dict[str, keys.SshKey],
                                             tmp_path: Path) -> None:
    alice = ssh_keys["alice"]
    snap.repos.git("config", "gpg.format", "ssh")
    snap.repos.git("config", "user.signingkey", str(alice.private))
    snap.repos.write(".taydash/allowed_signers",
                     keys.allowed_signers_line(alice, 'namespaces="git,taydash-manifest"'))
    snap.repos.configure(snap.toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = '
                                           '"required"\n', 1)
                         + '[tags]\nrequire_signed = false\nformats = ["ssh"]\n')
    assert snap.tag("v0.1.0").returncode == 0
    (tmp_path / "m.json").write_bytes(snap.raw_get("manifests/v0.1.0.json"))
    (tmp_path / "m.sig").write_bytes(snap.raw_get("manifests/v0.1.0.json.sig"))
    with (tmp_path / "m.json").open() as fh:
        by_hand = run("ssh-keygen", "-Y", "verify", "-f", snap.repos.work / ".taydash/allowed_signers",
                      "-I", alice.principal, "-n", "taydash-manifest", "-s", tmp_path / "m.sig",
                      input=fh.read(), check=False)
    assert by_hand.returncode == 0, by_hand.stderr
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0 and f"signed by {alice.principal} (allowed)" in proc.stderr


def test_a_forged_template_copies_no_other_database(snap: Snap) -> None:
    """The archive says how its database was created, template included: a forged one naming
    another database of the server would have the restore clone it (its tables, its data)
    into a database the forger can then read. A restored database is made from template0."""
    import zstandard

    secret = f"s{os.urandom(4).hex()}"  # as long as "template0": the archive's lengths hold
    snap.pg.create_db(secret)
    snap.pg.psql("CREATE TABLE payroll (salary int)", db=secret)
    try:
        assert snap.tag("v0.1.0").returncode == 0
        art = snap.artifact("v0.1.0", "postgres")
        data = snap.raw_get(str(art["key"]))
        if art.get("compressed") == "zstd":
            data = zstandard.ZstdDecompressor().stream_reader(data).read()
        assert data.count(b"TEMPLATE = template0") == 1
        snap.forge("v0.1.0", str(art["key"]),
                   data.replace(b"TEMPLATE = template0", f"TEMPLATE = {secret}".encode()),
                   compressed="")
        target = f"{snap.db}_forged"
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
        try:
            assert proc.returncode == 0, proc.stderr
            assert f"template {secret} (a restored database is always made from template0)" \
                in proc.stderr
            assert snap.pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'payroll'",
                                db=target) == "0"
            assert snap.pg.psql("SELECT count(*) FROM readings", db=target) == "500"
        finally:
            snap.pg.drop_db(target)
    finally:
        snap.pg.drop_db(secret)


def test_an_artifact_of_another_backup_is_refused(snap: Snap) -> None:
    assert snap.tag("v0.9.0").returncode == 0
    assert snap.tag("v1.0.0").returncode == 0
    old = snap.artifact("v0.9.0", "postgres")
    doc = json.loads(snap.raw_get("manifests/v1.0.0.json"))
    doc["artifacts"] = [old if a["kind"] == "postgres" and not a.get("roles") else a
                        for a in doc["artifacts"]]
    snap.raw_put("manifests/v1.0.0.json", json.dumps(doc).encode())
    proc = snap.cli("backups", "verify", "v1.0.0")
    assert proc.returncode == 1 and "does not belong to this backup's run" in proc.stderr
    proc = snap.cli("restore", "db", "v1.0.0", "--target-db", f"{snap.db}_old")
    assert proc.returncode == 1 and "does not belong to this backup's run" in proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{snap.db}_old'") == "0"


def test_a_manifest_that_names_another_commit_is_refused(snap: Snap) -> None:
    # Every other field is genuine: only the commit it claims to back up is another real one
    # of this repository (what a drill of the tagged environment would check out).
    before = snap.repos.head()
    snap.repos.commit("v1.0.0")
    assert snap.tag("v1.0.0").returncode == 0
    doc = json.loads(snap.raw_get("manifests/v1.0.0.json"))
    assert doc["commit"] == snap.repos.head() != before
    doc["commit"] = before
    snap.raw_put("manifests/v1.0.0.json", json.dumps(doc).encode())
    said = f"the backup of v1.0.0 records commit {before[:12]}, but v1.0.0 points at " \
           f"{snap.repos.head()[:12]}"
    for command in (["backups", "verify", "v1.0.0"], ["drill", "--last", "1"]):
        proc = snap.cli(*command)
        assert proc.returncode == 1 and said in proc.stdout + proc.stderr, (command, proc.stderr)


def _plain_packet(data: bytes) -> bytes:
    """What `gpg --store` makes: an OpenPGP literal packet, encrypted to nobody."""
    return run_bytes(["gpg", "--batch", "--store", "--output", "-"], data)


def run_bytes(argv: list[str], data: bytes) -> bytes:
    import subprocess

    return subprocess.run(argv, input=data, capture_output=True, check=True).stdout


def test_encrypted_means_encrypted(snap: Snap, gnupghome: keys.Keyring, tmp_path: Path) -> None:
    snap.repos.configure(snap.toml.replace('on_tag = ["v*"]',
                                           'on_tag = ["v*"]\nencrypt_to = ["trusted@example.test"]'))
    assert snap.tag("v0.1.0").returncode == 0
    # The store writer replaces the encrypted dump by a readable one in a plain packet (a
    # dump of its choosing would do), fixing hash and size in the manifest to match.
    art = snap.artifact("v0.1.0", "postgres")
    plain = run_bytes(["gpg", "--batch", "--decrypt"], snap.raw_get(str(art["key"])))
    snap.forge("v0.1.0", str(art["key"]), _plain_packet(plain))
    target = f"{snap.db}_plain"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    assert proc.returncode == 1 and "holds no public-key encryption" in proc.stderr, proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
    # The config bundle likewise; and the folder restore made is gone again.
    bundle = snap.artifact("v0.1.0", "config")
    tar = run_bytes(["gpg", "--batch", "--decrypt"], snap.raw_get(str(bundle["key"])))
    snap.forge("v0.1.0", str(bundle["key"]), _plain_packet(tar))
    dest = tmp_path / "restored-config"
    proc = snap.cli("restore", "config", "v0.1.0", "--dest", str(dest))
    assert proc.returncode == 1 and "holds no public-key encryption" in proc.stderr, proc.stderr
    assert not dest.exists()


@pytest.fixture
def on_s3rver(repos: Repos, postgres: services.Postgres, vm: services.VictoriaMetrics,
              gnupghome: keys.Keyring, s3rver: services.S3Server,
              s3rver_bucket: str) -> Iterator[Snap]:
    env = {**os.environ, **s3rver.env()}
    snap = Snap(repos, postgres, vm, f"s3://{s3rver_bucket}/backups", s3rver, env)
    yield snap
    postgres.drop_db(snap.db)


def test_a_server_without_conditional_writes_is_refused_unless_single_writer(
        on_s3rver: Snap) -> None:
    snap = on_s3rver
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 3, proc.stderr
    assert "does not honour conditional writes" in proc.stderr and "unsafe_single_writer" in \
        proc.stderr
    assert snap.raw_keys("") == []  # refused before anything was stored
    # The probe's cache, forged to claim conditional writes: a snapshot asks the server again.
    cache = next((snap.repos.work / ".git" / "taydash" / "stores").glob("s3-features-*.json"))
    doc = json.loads(cache.read_text())
    assert doc["conditional_create"] is False
    cache.write_text(json.dumps({**doc, "conditional_create": True}))
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 3 and "does not honour conditional writes" in proc.stderr
    assert snap.raw_keys("") == []
    # Said in the configuration: only this machine snapshots.
    snap.repos.configure(snap.toml.replace('region = "us-east-1"\n',
                                           'region = "us-east-1"\nunsafe_single_writer = true\n'))
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert "versioning off" in proc.stderr  # said, and left as it is
    assert snap.cli("backups", "verify", "v0.1.0").returncode == 0
    assert snap.raw_keys("manifests/") == ["manifests/v0.1.0.SHA256SUMS", "manifests/v0.1.0.json"]
    # A delete is reported for keys that are really gone (no ListObjectVersions here).
    assert snap.tag("v0.2.0").returncode == 0
    kept = set(snap.raw_keys(""))
    proc = snap.cli("backups", "delete", "v0.1.0", "--yes")
    assert proc.returncode == 0, proc.stderr
    # (the record that it was removed stays)
    left = {k for k in snap.raw_keys("") if not k.startswith("retention/v0.1.0/")}
    assert not [k for k in left if "v0.1.0" in k]
    assert {k for k in kept if "v0.1.0" not in k} == left


def test_vmbackup_uses_taydash_credentials_whatever_aws_variables_say(on_s3rver: Snap) -> None:
    snap = on_s3rver
    snap.repos.configure(snap.toml.replace('region = "us-east-1"\n',
                                           'region = "us-east-1"\nunsafe_single_writer = true\n'))
    # An unrelated AWS identity in the operator's shell: s3rver checks access keys.
    env = {**snap.env, "AWS_ACCESS_KEY_ID": "AKIAUNRELATED000000", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_SESSION_TOKEN": "stale"}
    assert snap.tag("v0.1.0", env=env).returncode == 0
    proc = snap.cli("backups", "verify", "v0.1.0", "--deep", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [k for k in snap.raw_keys("vm-backups/") if k.endswith("backup_complete.ignore")]
    # With taydash's own key wrong, the failure names the endpoint and the key id used.
    wrong = {**env, "TAYDASH_S3_ACCESS_KEY": "WRONGKEYID"}
    proc = snap.cli("restore", "vm", "v0.1.0", "--storage-data-path",
                    str(snap.repos.base / "vm-restored"), env=wrong)
    assert proc.returncode == 3
    assert "WRONGKEYID" in proc.stderr and snap.toml.split('endpoint = "')[1].split('"')[0] in \
        proc.stderr
    assert "S3RVER" not in proc.stderr  # the secret (here equal to the right key id) is not said


# --- retention never deletes a live backup ---------------------------------------------


def _backups(snap: Snap) -> list[str]:
    return [d["tag"] for d in json.loads(snap.cli("backups", "list", "--json").stdout)]


def _run_keys(snap: Snap, run: str) -> list[str]:
    return [k for k in snap.raw_keys("") if run in k]


def test_an_interrupted_delete_never_removes_the_tags_next_backup(snap: Snap) -> None:
    for tag in ("v3.0.8", "v3.0.9"):
        snap.repos.commit(tag)
        assert snap.tag(tag).returncode == 0
    old = json.loads(snap.raw_get("manifests/v3.0.8.json"))
    # `backups delete v3.0.8` killed right after the manifest went: its tombstone stays.
    snap.raw_put("trash/v3.0.8.json", json.dumps(old).encode())
    snap.raw_delete("manifests/v3.0.8.json")
    proc = snap.cli("snapshot", "v3.0.8")  # the tag is snapshotted again: a new run
    assert proc.returncode == 0, proc.stderr
    new = json.loads(snap.raw_get("manifests/v3.0.8.json"))
    assert new["run"] != old["run"]
    proc = snap.cli("backups", "prune", "--keep-last", "100", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "finished removing v3.0.8" in proc.stderr  # the old run's objects went ...
    # (all but the record that retention removed that run, which says so)
    assert _run_keys(snap, old["run"]) == [f"retention/v3.0.8/{old['run']}.json"]
    assert snap.raw_keys("trash/") == []
    assert json.loads(snap.raw_get("manifests/v3.0.8.json"))["run"] == new["run"]  # ... not these
    assert snap.cli("backups", "verify", "v3.0.8").returncode == 0
    orphans = json.loads(snap.cli("backups", "list", "--orphans", "--json").stdout)
    assert orphans == []


def test_a_planted_tombstone_deletes_nothing_live(snap: Snap) -> None:
    for tag in ("v0.9.0", "v1.0.0"):
        snap.repos.commit(tag)
        assert snap.tag(tag).returncode == 0
    live = snap.raw_get("manifests/v1.0.0.json")
    snap.raw_put("trash/v1.0.0.json", live)  # a copy of the newest release's live manifest
    # ... and one naming another tag, listing v1.0.0's genuine keys.
    other = json.loads(live)
    other["tag"] = "v0.9.0"
    snap.raw_put("trash/v0.9.0.json", json.dumps(other).encode())
    before = _run_keys(snap, json.loads(live)["run"])
    proc = snap.cli("backups", "delete", "v0.9.0", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "does not belong to this backup's run" in proc.stderr  # the forged one, reported
    proc = snap.cli("backups", "prune", "--keep-last", "5", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert _backups(snap) == ["v1.0.0"]
    assert _run_keys(snap, json.loads(live)["run"]) == before
    assert snap.cli("backups", "verify", "v1.0.0").returncode == 0
    assert snap.raw_keys("trash/") == []  # the delete of v0.9.0 replaced the forged one


def test_a_tombstone_under_another_tags_name_is_reported_and_not_acted_on(snap: Snap) -> None:
    snap.repos.commit("v1.0.0")
    assert snap.tag("v1.0.0").returncode == 0
    live = json.loads(snap.raw_get("manifests/v1.0.0.json"))
    # The manifest of a run of v1.0.0 that is not live, its keys renamed to match, planted as
    # the tombstone of v0.5.0: finishing it would sign a record that v1.0.0 was pruned.
    run = "20260101_000000-deadbeef"
    forged = json.loads(json.dumps(live).replace(live["run"], run))
    snap.raw_put("trash/v0.5.0.json", json.dumps(forged).encode())
    proc = snap.cli("backups", "prune", "--keep-last", "5", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "trash/v0.5.0.json: nothing of a backup removed: it is named trash/v0.5.0.json but " \
        "holds the manifest of v1.0.0" in proc.stderr, proc.stderr
    assert snap.raw_keys("retention/") == []
    assert snap.raw_keys("trash/") == ["trash/v0.5.0.json"]  # left for a person
    assert snap.cli("backups", "verify", "v1.0.0").returncode == 0


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_a_delete_cut_short_leaves_its_own_tombstone_not_a_planted_one(snap: Snap) -> None:
    for tag in ("v0.9.0", "v1.0.0"):
        snap.repos.commit(tag)
        assert snap.tag(tag).returncode == 0
    ours = json.loads(snap.raw_get("manifests/v0.9.0.json"))
    live = json.loads(snap.raw_get("manifests/v1.0.0.json"))
    # A tombstone planted for v0.9.0 that lists the newest release's keys ...
    snap.raw_put("trash/v0.9.0.json", json.dumps({**live, "tag": "v0.9.0"}).encode())
    # ... and a folder where v0.9.0's dump should be: the delete stops at it, half done.
    key = next(a["key"] for a in ours["artifacts"] if a["kind"] == "postgres")
    folder = Path(snap.store_url[len("file://"):]) / key
    folder.unlink()
    folder.mkdir()
    (folder / "planted").write_text("not a dump")
    proc = snap.cli("backups", "verify", "v0.9.0")
    assert proc.returncode == 1 and f"{key} in {snap.store_url} is a folder, not a stored " \
        "object" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    proc = snap.cli("backups", "delete", "v0.9.0", "--yes")
    assert proc.returncode == 3, proc.stderr
    assert f"cannot delete {key} from {snap.store_url} (Is a directory)" in proc.stderr
    assert "unexpected error" not in proc.stderr
    # What the next run finishes is this deletion: the planted tombstone was replaced first.
    tomb = json.loads(snap.raw_get("trash/v0.9.0.json"))
    assert (tomb["run"], tomb["artifacts"]) == (ours["run"], ours["artifacts"])
    shutil.rmtree(folder)
    proc = snap.cli("backups", "prune", "--keep-last", "5", "--yes")
    assert proc.returncode == 0 and "finished removing v0.9.0" in proc.stderr, proc.stderr
    assert _run_keys(snap, ours["run"]) == [f"retention/v0.9.0/{ours['run']}.json"]
    assert snap.raw_keys("trash/") == []
    assert snap.cli("backups", "verify", "v1.0.0").returncode == 0


def test_the_newest_release_is_a_release(snap: Snap) -> None:
    for n, tag in enumerate(("v1.0.0", "v2.0.0", "vNext")):
        snap.repos.commit(tag)
        assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0
    proc = snap.cli("backups", "prune", "--keep-last", "1", "--yes")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("v")}
    assert "newest release" in rows["v2.0.0"] and "newest release" not in rows["vNext"]
    assert _backups(snap) == ["v2.0.0", "vNext"]
    from taydash_hooks.snapshots.manifest import Manifest
    from taydash_hooks.snapshots.retention import newest_release

    docs = [Manifest(t, "", "", ()) for t in ("v0.5.0", "checkpoint-1", "v0.10.0-rc1", "vNext")]
    assert newest_release(docs) == "v0.10.0-rc1"
    assert newest_release(docs, "regex:v[0-9]+\\.[0-9]+\\.[0-9]+") == "v0.5.0"


def test_a_manifest_that_is_not_bound_is_neither_kept_nor_deleted(snap: Snap) -> None:
    for n, tag in enumerate(("v0.1.0", "v0.2.0")):
        snap.repos.commit(tag)
        assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0
    forged = json.loads(snap.raw_get("manifests/v0.2.0.json"))
    forged["tag"] = "v9.9.9"
    snap.raw_put("manifests/v9.9.9.json", json.dumps(forged).encode())  # no such tag here
    proc = snap.cli("backups", "prune", "--keep-last", "1", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "not judged, left as it is: v9.9.9" in proc.stderr
    assert _backups(snap) == ["v0.2.0", "v9.9.9"]  # v9.9.9 did not displace v0.2.0


def test_orphans_are_listed_never_deleted(snap: Snap) -> None:
    orphan = "db-backups/v0.0.9_20250101_000000-deadbeef.dump"  # in v0.1.0's folder's shape
    for n, tag in enumerate(("v0.1.0", "v0.2.0", "v0.3.0")):  # a minute apart: "last 1" holds
        snap.repos.commit(tag)
        assert snap.tag(tag, env=clock.shifted(snap.env, 60 * n)).returncode == 0
    snap.raw_put(orphan, b"someone's")
    proc = snap.cli("backups", "list", "--orphans")
    assert proc.returncode == 0
    assert orphan in proc.stdout
    # Neither a prune nor a delete of the backups around it takes it.
    pruned = snap.cli("backups", "prune", "--keep-last", "2", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    deleted = snap.cli("backups", "delete", "v0.2.0", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not snap.manifest_exists("v0.1.0") and not snap.manifest_exists("v0.2.0")
    assert snap.manifest_exists("v0.3.0")
    assert orphan in snap.raw_keys("db-backups/")
    assert snap.raw_get(orphan) == b"someone's"
    assert orphan in snap.cli("backups", "list", "--orphans").stdout
    # A planted manifest for a tag this repository does not have, listing the orphan (and a
    # copy of v0.3.0's own manifest renamed): it hides nothing.
    doc = json.loads(snap.raw_get("manifests/v0.3.0.json"))
    doc["tag"] = "v9.9.9"
    doc["artifacts"].append({**doc["artifacts"][0], "key": orphan, "sha256_key": None})
    snap.raw_put("manifests/v9.9.9.json", json.dumps(doc).encode())
    listed = {o["key"]: o["why"] for o in json.loads(
        snap.cli("backups", "list", "--orphans", "--json").stdout)}
    assert orphan in listed and "manifest of v9.9.9, which is no backup here" in listed[orphan]
    assert "manifests/v9.9.9.json" in listed
    assert not [k for k in listed if "v0.3.0" in k]  # the real backup's objects stay accounted


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_a_tombstone_that_does_not_parse_is_an_orphan_said_so_and_left(snap: Snap) -> None:
    snap.repos.commit("v1.0.0")
    assert snap.tag("v1.0.0").returncode == 0
    snap.raw_put("trash/v0.7.0.json", b"\x00 not a manifest {")
    proc = snap.cli("backups", "list", "--orphans", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {o["key"]: o["why"] for o in json.loads(proc.stdout)}
    assert listed == {"trash/v0.7.0.json": "a tombstone that does not parse"}, listed
    pruned = snap.cli("backups", "prune", "--keep-last", "5", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert snap.raw_keys("trash/") == ["trash/v0.7.0.json"]  # left for a person
    assert snap.cli("backups", "verify", "v1.0.0").returncode == 0


@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_duration_of_eternity_is_a_usage_error(snap: Snap, where: str) -> None:
    if where == "config":
        snap.repos.configure(snap.toml + '[snapshots.retention]\nkeep_within = "99999999999999y"\n')
        proc = snap.cli("backups", "prune", "--dry-run")
    else:
        proc = snap.cli("backups", "prune", "--keep-within", "99999999999999y", "--dry-run")
    assert proc.returncode == 2, proc.stderr
    assert "keep_within" in proc.stderr or "--keep-within" in proc.stderr
    assert "crash" not in proc.stderr


# --- leftovers --------------------------------------------------------------------------


def _journal(snap: Snap, tag: str, stamp: str, **more: object) -> Path:
    from taydash_hooks.snapshots.lock import tag_id

    folder = snap.repos.work / ".git" / "taydash" / "runs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{tag_id(tag)}-{stamp}.json"
    path.write_text(json.dumps({"tag": tag, "stamp": stamp, "pid": 999999, **more}))
    path.chmod(0o600)
    return path


def test_a_killed_runs_leftovers_go_even_when_another_clone_completed_the_tag(
        snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0  # "the other clone" completed the tag
    stamp = "20260101_000000-0badf00d"
    dead = f"db-backups/v0.1.0_{stamp}.dump.zst"
    snap.raw_put(dead, b"half a dump")
    created = json.loads(urllib.request.urlopen(f"{snap.vm.url}/snapshot/create").read())
    name = created["snapshot"]
    journal = _journal(snap, "v0.1.0", stamp, leftovers={"victoriametrics": [name]})
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 0 and "already has a backup" in proc.stderr, proc.stderr
    assert dead not in snap.raw_keys("db-backups/") and not journal.exists()
    listed = json.loads(urllib.request.urlopen(f"{snap.vm.url}/snapshot/list").read())
    assert name not in listed["snapshots"]
    assert snap.cli("backups", "verify", "v0.1.0").returncode == 0  # the live run untouched


def test_a_run_that_loses_the_race_keeps_no_journal(repos: Repos, postgres: services.Postgres,
                                                    vm: services.VictoriaMetrics,
                                                    gnupghome: keys.Keyring,
                                                    tmp_path: Path) -> None:
    # Staged through a file store, where a shell line can play the other clone; the
    # conditional create itself is held on every backend by test_store.
    store = tmp_path / "store"
    snap = Snap(repos, postgres, vm, f"file://{store}", None, dict(os.environ))
    rival = tmp_path / "rival.json"
    rival.write_text('{"tag": "v0.1.0"}')
    # The other clone writes its manifest while this run dumps (pg_dump starts it).
    race = (f'mkdir -p {store}/manifests; [ -e {store}/manifests/v0.1.0.json ] || '
            f'cp {rival} {store}/manifests/v0.1.0.json; exec "$@"')
    snap.repos.configure(snap.toml.replace("[snapshots.postgres]\n",
                                           "[snapshots.postgres]\nexec = [\"sh\", \"-c\", "
                                           f"{json.dumps(race)}, \"race\"]\n"))
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
    assert proc.returncode == 1 and "another run owns v0.1.0" in proc.stderr, proc.stderr
    assert not list((snap.repos.work / ".git" / "taydash" / "runs").glob("*.json"))
    assert [k for k in snap.raw_keys("") if k != "manifests/v0.1.0.json"] == []
    postgres.drop_db(snap.db)


def test_a_planted_lone_signature_neither_blocks_nor_signs_a_backup(
        snap: Snap, gnupghome: keys.Keyring) -> None:
    fpr = _signing(snap, gnupghome, "required")
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    snap.raw_put("manifests/v0.1.0.json.sig", b"-----BEGIN PGP SIGNATURE-----\nforged\n")
    proc = snap.cli("snapshot", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0 and f"signed by {fpr} (allowed)" in proc.stderr, proc.stderr


def test_a_huge_number_in_a_manifest_is_a_refusal_never_a_crash(snap: Snap) -> None:
    """A 400-digit integer is valid JSON; as a duration it overflowed float() and crashed
    list, health, metrics and verify --all with a traceback."""
    assert snap.tag("v0.1.0").returncode == 0
    text = snap.raw_get("manifests/v0.1.0.json").decode()
    doc = json.loads(text)
    doc["artifacts"][0]["seconds"] = 1  # a number, to be replaced by the huge one as text
    forged = json.dumps(doc).replace('"seconds": 1', '"seconds": 1' + "0" * 400, 1)
    snap.raw_put("manifests/v0.1.0.json", forged.encode())
    for args in (["backups", "list"], ["health"], ["metrics"], ["backups", "verify", "--all"]):
        proc = snap.cli(*args)
        said = proc.stdout + proc.stderr
        assert proc.returncode != 3 and "unexpected error" not in said, (args, said)
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1 and "seconds is not a duration" in proc.stderr, proc.stderr


@pytest.mark.parametrize("snap", ["file"], indirect=True)  # a key with an ESC: a file name here
def test_store_text_cannot_drive_the_readers_terminal(snap: Snap) -> None:
    """A key or a manifest field with terminal escapes is printed with them escaped: it
    cannot erase a line or print a forged one."""
    assert snap.tag("v0.1.0").returncode == 0
    evil = "db-backups/x\x1b[2K\rall backups verified\n.dump"
    snap.raw_put(evil, b"planted")
    proc = snap.cli("backups", "list", "--orphans")
    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
    assert "x\\x1b[2K\\x0dall backups verified\\x0a.dump" in proc.stdout, proc.stdout
    doc = json.loads(snap.raw_get("manifests/v0.1.0.json"))
    doc["tagger"] = "T \x1b]0;pwned\x07 <t@example.test>"
    snap.raw_put("manifests/v0.1.0.json", json.dumps(doc).encode())
    shown = snap.cli("backups", "show", "v0.1.0")
    assert "\x1b" not in shown.stdout + shown.stderr and "\x07" not in shown.stdout


def test_a_forged_checksum_list_or_waiting_signature_is_not_believed(
        snap: Snap, gnupghome: keys.Keyring) -> None:
    """The store writer rewrites the signed checksum list (a dump it also replaced), or drops
    a manifest's signature and plants one of its own as the 'waiting' .sig.next."""
    _signing(snap, gnupghome, "required")
    assert snap.tag("v0.1.0").returncode == 0
    listed = snap.raw_get("manifests/v0.1.0.SHA256SUMS")
    snap.raw_put("manifests/v0.1.0.SHA256SUMS", listed.replace(listed[:8], b"00000000", 1))
    proc = snap.cli("backups", "verify", "v0.1.0", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = next(a for a in json.loads(proc.stdout)["artifacts"] if a["kind"] == "checksums")
    said = " | ".join(row["problems"])
    assert "does not list exactly the manifest's files" in said and "signature rejected" in said
    snap.raw_put("manifests/v0.1.0.SHA256SUMS", listed)
    # The list left as it is, its signature deleted: what a recovery by hand checks first.
    signature = snap.raw_get("manifests/v0.1.0.SHA256SUMS.sig")
    snap.raw_delete("manifests/v0.1.0.SHA256SUMS.sig")
    proc = snap.cli("backups", "verify", "v0.1.0", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = next(a for a in json.loads(proc.stdout)["artifacts"] if a["kind"] == "checksums")
    assert row["problems"] == ['manifests/v0.1.0.SHA256SUMS is unsigned; signed_manifests = '
                               '"required"'], row
    snap.raw_put("manifests/v0.1.0.SHA256SUMS.sig", signature)
    assert snap.cli("backups", "verify", "v0.1.0").returncode == 0
    forged = gnupghome.gpg("--armor", "--detach-sign", "--local-user",
                           gnupghome.keys["untrusted"].fingerprint,
                           input=snap.raw_get("manifests/v0.1.0.json").decode())
    snap.raw_delete("manifests/v0.1.0.json.sig")
    snap.raw_put("manifests/v0.1.0.json.sig.next", forged.encode())
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1 and "signature rejected" in proc.stderr, proc.stderr
