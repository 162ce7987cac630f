"""Encryption at rest: database dumps encrypted while they stream; verify needs no secret key."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from testing import services
from testing.gitrepo import Repos, taydash
from testing.snap import Snap

RECIPIENT = "trusted@example.test"


def _encrypting(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace('on_tag = ["v*"]',
                                           f'on_tag = ["v*"]\nencrypt_to = ["{RECIPIENT}"]'))


def _home_without_secret_key(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "pubonly"
    home.mkdir(mode=0o700)
    public = subprocess.run(["gpg", "--batch", "--export", "--armor", RECIPIENT],
                            capture_output=True, check=True).stdout
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--import"], input=public, env=env, capture_output=True,
                   check=True)
    return env


def test_dumps_are_encrypted_while_they_stream(snap: Snap, tmp_path: Path) -> None:
    _encrypting(snap)
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    assert str(art["key"]).endswith(".dump.zst.gpg") and art["encrypted_to"] == [RECIPIENT]
    stored = snap.raw_get(str(art["key"]))
    assert hashlib.sha256(stored).hexdigest() == art["sha256"]  # the hash of the stored bytes
    # Not a dump anyone can read: pg_restore refuses it, and no row is in clear.
    raw = tmp_path / "stored.dump.gpg"
    raw.write_bytes(stored)
    assert subprocess.run(["pg_restore", "--list", str(raw)], capture_output=True).returncode != 0
    for row in (1, 250, 500):
        assert hashlib.md5(str(row).encode()).hexdigest().encode() not in stored
    # verify re-hashes without any secret key; --deep and restore decrypt with the user's key.
    no_secret = {**snap.env, **_home_without_secret_key(tmp_path)}
    assert snap.cli("backups", "verify", "v0.1.0", env=no_secret).returncode == 0
    deep = snap.cli("backups", "verify", "v0.1.0", "--deep")
    assert deep.returncode == 0, deep.stdout + deep.stderr
    snap.restores_all_rows("v0.1.0", "decrypted")


def test_a_missing_secret_key_is_one_sentence_and_exit_3(snap: Snap, tmp_path: Path) -> None:
    _encrypting(snap)
    assert snap.tag("v0.1.0").returncode == 0
    env = {**snap.env, **_home_without_secret_key(tmp_path)}
    target = f"{snap.db}_nokey"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, env=env)
    assert proc.returncode == 3, proc.stderr
    assert "no secret key in your gpg keyring can decrypt it" in proc.stderr
    errors = [ln for ln in proc.stderr.strip().splitlines() if "WARNING" not in ln]
    assert "Traceback" not in proc.stderr and len(errors) == 1  # (the unsigned-manifest warning aside)
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
    # The stored bytes were never in doubt: they are hashed, and the deep step is said to be
    # impossible here (which key), exit 3, not "verification FAILED".
    deep = snap.cli("backups", "verify", "v0.1.0", "--deep", env=env)
    assert deep.returncode == 3, deep.stdout + deep.stderr
    assert "deep step not possible here" in deep.stdout and "no secret key" in deep.stdout
    assert "FAILED" not in deep.stderr and "every hash matches, but" in deep.stderr


def test_an_encrypted_restore_that_fails_early_ends_at_once(snap: Snap) -> None:
    # pg_restore stops at the first table (a domain that only holds in the database it was
    # dumped from) with megabytes still to come out of gpg. gpg then blocked writing them,
    # and taydash waited for it until the snapshot timeout (here 900 s; the run is cut at 120).
    _encrypting(snap)
    snap.pg.psql(f"CREATE DOMAIN only_here AS text CHECK (current_database() = '{snap.db}');"
                 "CREATE TABLE aaa_first (v only_here); INSERT INTO aaa_first VALUES ('x');"
                 "CREATE TABLE zzz_bulk AS SELECT g, md5(g::text) || md5((g * 7)::text) AS h "
                 "FROM generate_series(1, 150000) g", db=snap.db)
    assert snap.tag("v0.1.0").returncode == 0
    assert int(str(snap.artifact("v0.1.0", "postgres")["size"])) > 4 * 1024 * 1024
    target = f"{snap.db}_early"
    proc = taydash("restore", "db", "v0.1.0", "--target-db", target, cwd=snap.repos.work,
                   env={**snap.env, "TAYDASH_SNAPSHOT_TIMEOUT": "900"}, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert f"pg_restore into {target} failed" in proc.stderr and "only_here" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
    # taydash's own decrypting gpg (its argv ends so); pgrep exits 1 when nothing matches,
    # 2 on a usage error (as "--decrypt" without "--" was: that passed for years).
    left = subprocess.run(["pgrep", "-a", "-f", "--", "--status-fd 2 --decrypt$"],
                          capture_output=True, text=True, timeout=30)
    assert left.returncode == 1, (left.returncode, left.stdout, left.stderr)  # no gpg left


def test_a_recipient_without_a_public_key_fails_the_snapshot_cleanly(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace('on_tag = ["v*"]',
                                           'on_tag = ["v*"]\nencrypt_to = ["nobody@example.test"]'))
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    proc = snap.cli("snapshot", "v0.1.0", "--only", "postgres")
    assert proc.returncode == 3 and "gpg --encrypt" in proc.stderr, proc.stderr
    assert json.loads(snap.cli("backups", "list", "--json").stdout) == []
    assert not [k for k in snap.raw_keys("db-backups/") if "v0.1.0" in k]


def test_doctor_warns_when_vmbackup_files_would_be_stored_in_clear(repos: Repos,
                                                                  s3: services.S3Server,
                                                                  bucket: str) -> None:
    from minio.sseconfig import Rule, SSEConfig

    repos.configure(f'[snapshots]\nstore = "s3://{bucket}/x"\nencrypt_to = ["{RECIPIENT}"]\n'
                    f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n')
    env = {**os.environ, **s3.env()}
    # No S3 client on PATH: both ways are named.
    env["PATH"] = ":".join(d for d in env["PATH"].split(":")
                           if not any((Path(d) / c).exists() for c in ("aws", "mc")))
    proc = taydash("doctor", cwd=repos.work, env=env)
    assert "FAIL bucket default encryption" in proc.stdout and "mc encrypt set" in proc.stdout
    assert "aws s3api put-bucket-encryption" in proc.stdout
    # With the aws CLI on PATH (awscli, installed with the suite) and no mc, the fix is aws's.
    with_aws = {**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
    assert shutil.which("aws", path=with_aws["PATH"]) and not shutil.which("mc", path=with_aws["PATH"])
    proc = taydash("doctor", cwd=repos.work, env=with_aws)
    fix = next(line for line in proc.stdout.splitlines() if "default encryption (" in line)
    assert f"aws s3api put-bucket-encryption --bucket {bucket}" in fix and "mc " not in fix, fix
    s3.client().set_bucket_encryption(bucket, SSEConfig(Rule.new_sse_s3_rule()))
    proc = taydash("doctor", cwd=repos.work, env=env)
    assert "OK   bucket default encryption" in proc.stdout and "AES256" in proc.stdout


def test_an_unknown_recipient_is_never_looked_up_over_the_network(snap: Snap,
                                                                   tmp_path: Path) -> None:
    # Without --auto-key-locate local, gpg asks WKD (DNS, then HTTPS) for an unknown address.
    snap.repos.configure(snap.toml.replace(
        'on_tag = ["v*"]', 'on_tag = ["v*"]\nencrypt_to = ["nobody@taydash-wkd.example"]'))
    assert snap.tag("v0.1.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    trace = tmp_path / "connect.trace"
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace),
                           sys.executable, "-m", "taydash_hooks", "snapshot", "v0.1.0",
                           "--only", "postgres"],
                          cwd=snap.repos.work, env=snap.env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "nobody@taydash-wkd.example" in proc.stderr, proc.stderr
    inet = [ln for ln in trace.read_text().splitlines()
            if "AF_INET" in ln and "127.0.0.1" not in ln and "::1" not in ln]
    assert inet == [], inet  # the only connections are the local PostgreSQL's


def test_a_keyring_a_test_makes_is_closed_when_it_is_done(gnupghome: object,
                                                          tmp_path: Path) -> None:
    from testing import keys

    env = _home_without_secret_key(tmp_path)  # imports a key: gpg starts an agent there
    subprocess.run(["gpg", "--batch", "--list-secret-keys"], env=env, capture_output=True)
    assert keys.agents(tmp_path), "gpg started no agent: this test proves nothing"
    keys.close_keyrings(tmp_path)  # what the autouse fixture does after every test
    deadline = time.monotonic() + 10
    while keys.agents(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert keys.agents(tmp_path) == []


def test_a_cut_encrypted_dump_is_said_to_fail_decryption_not_to_be_a_plain_packet(
        snap: Snap) -> None:
    """Someone who can write the store cut the encrypted dump and rewrote its manifest entry to
    match: every hash is right, and the deep read names what really happened (gpg's failure),
    not a forgery of another kind."""
    _encrypting(snap)
    assert snap.tag("v0.1.0").returncode == 0
    art = next(a for a in snap.manifest("v0.1.0")["artifacts"]  # type: ignore[attr-defined]
               if a["kind"] == "postgres" and not a.get("roles"))
    stored = snap.raw_get(str(art["key"]))
    snap.forge("v0.1.0", str(art["key"]), stored[: len(stored) * 2 // 3])
    deep = snap.cli("backups", "verify", "v0.1.0", "--deep")
    out = deep.stdout + deep.stderr
    assert deep.returncode == 1, out
    assert "decrypting the dump" in out and "failed" in out, out
    assert "plain OpenPGP packet" not in out, out
