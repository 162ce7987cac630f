"""The README's "Restore without taydash" block, run as written against a real backup.

The store must stay readable with standard tools alone (sha256sum, gpg, zstd, psql,
pg_restore, vmrestore): if the layout drifts from what the README says, this fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from testing import docs, keys, services
from testing.gitrepo import Repos
from testing.snap import Snap


def _signed(snap: Snap, ring: keys.Keyring, encrypted: bool = False,
            dedup: bool = False) -> None:
    """Manifests and checksum lists signed by the release key, as the block expects (with
    ``dedup``, the dump stored as chunks)."""
    fpr = ring.keys["trusted"].fingerprint
    snap.repos.write(".taydash/keys.asc", ring.export("trusted"))
    snap.repos.git("config", "user.signingkey", fpr)
    toml = snap.toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = "required"\n', 1)
    if encrypted:
        toml = toml.replace('on_tag = ["v*"]', 'on_tag = ["v*"]\nencrypt_to = ["trusted@example.test"]')
    if dedup:
        toml = toml.replace("[snapshots.postgres]\n", "[snapshots.postgres]\ndedup = true\n", 1)
    snap.repos.configure(toml + f'[tags]\nrequire_signed = false\nopenpgp_fingerprints = ["{fpr}"]\n')


@pytest.mark.parametrize(("where", "encrypted", "dedup"),
                         [("file", False, False), ("file", True, False), ("s3", False, False),
                          ("s3", True, False), ("file", False, True), ("s3", False, True)],
                         ids=["file-plain", "file-encrypted", "s3-plain", "s3-encrypted",
                              "file-dedup", "s3-dedup"])
def test_the_readme_recovery_runs_as_written(request: pytest.FixtureRequest, repos: Repos,
                                             postgres: services.Postgres,
                                             vm: services.VictoriaMetrics,
                                             gnupghome: keys.Keyring, tmp_path: Path,
                                             where: str, encrypted: bool, dedup: bool) -> None:
    store = tmp_path / "store"
    script = docs.block("restore-without-taydash")
    env = dict(os.environ)
    if where == "s3":
        s3: services.S3Server = request.getfixturevalue("s3")
        bucket = request.getfixturevalue("bucket")
        snap = Snap(repos, postgres, vm, f"s3://{bucket}/backups", s3, {**env, **s3.env()})
        # The copy-down step first, then the same recovery on the copy; the AWS CLI reads the
        # key from its own variables, and gets nothing of taydash's.
        script = docs.block("restore-without-taydash-s3") + 'export STORE\n' + script
        env = {k: v for k, v in env.items() if not k.startswith("TAYDASH_")}
        env.update(BUCKET=bucket, PREFIX="backups", ENDPOINT=f"http://{s3.endpoint}",
                   AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
                   AWS_DEFAULT_REGION="us-east-1", TMPDIR=str(tmp_path),
                   PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    else:
        snap = Snap(repos, postgres, vm, f"file://{store}", None, env)
    _signed(snap, gnupghome, encrypted, dedup)
    # A database not made like the server's default one, with a setting of its own: the
    # block brings both back as taydash does.
    postgres.drop_db(snap.db)
    postgres.psql(f"CREATE DATABASE {snap.db} TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'")
    postgres.psql(f"ALTER DATABASE {snap.db} SET work_mem TO '12MB'")
    postgres.psql("CREATE TABLE readings (id int primary key, value text);"
                  "INSERT INTO readings SELECT g, md5(g::text) FROM generate_series(1, 500) g",
                  db=snap.db)
    newdb = f"recovered_{secrets.token_hex(3)}"
    vmdata = tmp_path / "vm-recovered"
    try:
        assert snap.tag("v0.1.0").returncode == 0
        if dedup:
            assert snap.artifact("v0.1.0", "postgres")["key"].endswith(".chunks")
        env.update(TAG="v0.1.0", NEWDB=newdb, VMDATA=str(vmdata), PGHOST=postgres.host,
                   PGPORT=str(postgres.port), PGUSER=postgres.user,
                   PATH=f"{postgres.bindir}:{env['PATH']}")
        if where == "file":
            env["STORE"] = str(store)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert postgres.psql("SELECT count(*) FROM readings", db=newdb) == "500"
        assert postgres.psql("SELECT pg_encoding_to_char(encoding) || ' ' || datcollate "
                             f"FROM pg_database WHERE datname = '{newdb}'") == "LATIN1 C"
        assert postgres.psql("SHOW work_mem", db=newdb) == "12MB"
        restored = services.start_vm(vmdata)
        try:
            rows = restored.export(f'snap_metric{{db="{snap.db}"}}')
            assert rows and rows[0]["values"] == [7], rows
        finally:
            services.stop_vm(restored)
    finally:
        postgres.drop_db(newdb)
        postgres.drop_db(snap.db)


@pytest.mark.parametrize("attack", ["a command in the roles script", "a command in a field"])
def test_the_readme_recovery_stops_at_the_check_when_the_store_was_changed(
        repos: Repos, postgres: services.Postgres, vm: services.VictoriaMetrics,
        gnupghome: keys.Keyring, tmp_path: Path, attack: str) -> None:
    """Someone who can write the store plants a command: in the roles script (with its
    sidecar fixed to match), or in the manifest's database field (which went unquoted into a
    sed command). The block runs nothing of it: it stops at the signature or checksum check."""
    store = tmp_path / "store"
    snap = Snap(repos, postgres, vm, f"file://{store}", None, dict(os.environ))
    _signed(snap, gnupghome)
    marker = tmp_path / "pwned"
    newdb = f"recovered_{secrets.token_hex(3)}"
    try:
        assert snap.tag("v0.1.0").returncode == 0
        doc = json.loads(snap.raw_get("manifests/v0.1.0.json"))
        roles = next(a for a in doc["artifacts"] if a.get("roles"))
        if attack == "a command in the roles script":
            planted = f"\\! touch {marker}\n".encode() + snap.raw_get(roles["key"])
            snap.raw_put(roles["key"], planted)
            name = roles["key"].rsplit("/", 1)[-1]
            snap.raw_put(roles["sha256_key"],
                         f"{hashlib.sha256(planted).hexdigest()}  {name}\n".encode())
            stops_at = "FAILED"  # sha256sum -c against the signed list
        else:
            dump = next(a for a in doc["artifacts"] if a["kind"] == "postgres" and not a.get("roles"))
            dump["database"] = f"x/e touch {marker}\n#"
            snap.raw_put("manifests/v0.1.0.json", json.dumps(doc).encode())
            stops_at = "BAD signature"  # gpg --verify of the manifest
        env = {**os.environ, "STORE": str(store), "TAG": "v0.1.0", "NEWDB": newdb,
               "VMDATA": str(tmp_path / "vm"), "PGHOST": postgres.host,
               "PGPORT": str(postgres.port), "PGUSER": postgres.user,
               "PATH": f"{postgres.bindir}:{os.environ['PATH']}"}
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c",
                               docs.block("restore-without-taydash")], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode != 0, proc.stdout + proc.stderr
        assert stops_at in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        assert not marker.exists()
        assert postgres.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{newdb}'") == "0"
        # taydash itself refuses the same store.
        verify = snap.cli("backups", "verify", "v0.1.0")
        assert verify.returncode == 1, verify.stdout + verify.stderr
    finally:
        postgres.drop_db(newdb)
        postgres.drop_db(snap.db)
