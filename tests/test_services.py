"""Each service fixture does real work: these fail when a fixture is broken."""

from __future__ import annotations

import io
import json
from pathlib import Path

from testing import keys, services
from testing.gitrepo import run


def test_postgres_row_survives_dump_and_restore(postgres: services.Postgres,
                                                tmp_path: Path) -> None:
    postgres.create_db("smoke_src")
    postgres.psql("CREATE TABLE t (id int, name text); INSERT INTO t VALUES (42, 'answer')",
                  db="smoke_src")
    dump = tmp_path / "smoke.dump"
    conn = ["-h", postgres.host, "-p", str(postgres.port), "-U", postgres.user]
    run("pg_dump", "-Fc", *conn, "-f", dump, "smoke_src")
    postgres.create_db("smoke_dst")
    run("pg_restore", *conn, "-d", "smoke_dst", dump)
    assert postgres.psql("SELECT id || ':' || name FROM t", db="smoke_dst") == "42:answer"
    postgres.drop_db("smoke_src")
    postgres.drop_db("smoke_dst")


def test_victoria_metrics_sample_can_be_queried_back(vm: services.VictoriaMetrics) -> None:
    vm.ingest('smoke_metric{job="taydash"} 123\n')
    # On disk at once, not in an in-memory part a snapshot taken during a merge would miss.
    assert list(vm.storage.glob("data/small/*/*/values.bin"))
    assert json.loads(vm.get("/snapshot/list"))["snapshots"] == []  # the flushing one is gone
    rows = vm.export("smoke_metric")
    assert rows[0]["values"] == [123]
    assert rows[0]["metric"]["job"] == "taydash"


def test_s3_object_round_trips_with_versioning(s3: services.S3Server, bucket: str) -> None:
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    client = s3.client()
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    assert client.get_bucket_versioning(bucket).status == ENABLED
    v1 = client.put_object(bucket, "k", io.BytesIO(b"one"), 3).version_id
    v2 = client.put_object(bucket, "k", io.BytesIO(b"two!"), 4).version_id
    assert v1 and v2 and v1 != v2
    assert client.get_object(bucket, "k").read() == b"two!"
    assert client.get_object(bucket, "k", version_id=v1).read() == b"one"
    versions = [o.version_id for o in client.list_objects(bucket, "k", include_version=True)]
    assert set(versions) == {v1, v2}


def test_keyring_has_every_kind_of_key(keyring: keys.Keyring) -> None:
    listing = keyring.gpg("--with-colons", "--list-keys")
    pub = {line.split(":")[9] if line.startswith("fpr:") else None for line in listing.splitlines()}
    for name in ("trusted", "untrusted", "expired", "revoked", "subkeyed"):
        assert keyring.keys[name].fingerprint in pub
    # The expired key is expired now: validity field "e" on its pub line.
    expired = keyring.gpg("--with-colons", "--list-keys", keyring.keys["expired"].fingerprint)
    pub_line = next(line for line in expired.splitlines() if line.startswith("pub:"))
    assert pub_line.startswith("pub:e:")
    assert keyring.keys["subkeyed"].subkey not in (None, keyring.keys["subkeyed"].fingerprint)


def test_ssh_key_signs_and_verifies(ssh_keys: dict[str, keys.SshKey], tmp_path: Path) -> None:
    alice = ssh_keys["alice"]
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(keys.allowed_signers_line(alice))
    msg = tmp_path / "msg"
    msg.write_text("hello")
    run("ssh-keygen", "-Y", "sign", "-n", "git", "-f", alice.private, msg)
    ok = run("ssh-keygen", "-Y", "verify", "-n", "git", "-f", allowed, "-I", alice.principal,
             "-s", f"{msg}.sig", input="hello")
    assert "Good" in ok.stdout + ok.stderr
    bad = run("ssh-keygen", "-Y", "verify", "-n", "git", "-f", allowed, "-I", alice.principal,
              "-s", f"{msg}.sig", input="tampered", check=False)
    assert bad.returncode != 0
