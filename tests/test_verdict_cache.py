"""Signature verdicts remembered under .git/taydash/verdicts (tags/verdicts.py): consulted
for history judged again, and never for anything that changed since it was judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testing import keys
from testing.snap import Snap


def _signing(snap: Snap, ring: keys.Keyring) -> str:
    fpr = ring.keys["trusted"].fingerprint
    snap.repos.write(".taydash/keys.asc", ring.export("trusted"))
    snap.repos.git("config", "user.signingkey", fpr)
    toml = snap.toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = "required"\n', 1)
    snap.repos.configure(toml + f'[tags]\nrequire_signed = false\nopenpgp_fingerprints = ["{fpr}"]\n')
    return fpr


def _remembered(snap: Snap) -> list[Path]:
    folder = snap.repos.work / ".git" / "taydash" / "verdicts"
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.is_dir() else []


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_a_verdict_is_remembered_and_judged_again_when_anything_changes(
        snap: Snap, gnupghome: keys.Keyring) -> None:
    fpr = _signing(snap, gnupghome)
    assert snap.tag("v0.1.0").returncode == 0
    listed = snap.cli("backups", "list")
    assert listed.returncode == 0 and "(allowed)" in listed.stdout, listed.stdout + listed.stderr
    files = _remembered(snap)
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert (files[0].parent.stat().st_mode & 0o777) == 0o700
    # It is consulted: a verdict planted in its place is what the next reader says ...
    for f in files:
        f.write_text(json.dumps({"ok": False, "signer": fpr, "reason": "as remembered",
                                 "refusal": "altered", "retired": ""}))
    again = snap.cli("backups", "verify", "v0.1.0")
    assert again.returncode == 1 and "as remembered" in again.stdout + again.stderr
    # ... but a changed signature is judged anew (its bytes are in the key) ...
    sig = snap.raw_get("manifests/v0.1.0.json.sig")
    snap.raw_put("manifests/v0.1.0.json.sig", sig.replace(b"\n", b"\r\n", 1))
    changed = snap.cli("backups", "verify", "v0.1.0")
    assert "as remembered" not in changed.stdout + changed.stderr
    snap.raw_put("manifests/v0.1.0.json.sig", sig)
    # ... and so is every one after the policy changed (here: the keys file holds another key).
    snap.repos.write(".taydash/keys.asc", gnupghome.export("untrusted"))
    snap.repos.commit("another key file")
    other = snap.cli("backups", "verify", "v0.1.0")
    assert other.returncode == 1, other.stdout + other.stderr
    assert "as remembered" not in other.stdout + other.stderr


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_a_refusal_that_may_pass_next_time_is_not_remembered(
        snap: Snap, gnupghome: keys.Keyring, tmp_path: Path) -> None:
    _signing(snap, gnupghome)
    assert snap.tag("v0.1.0").returncode == 0
    assert snap.cli("backups", "verify", "v0.1.0").returncode == 0
    judged = _remembered(snap)  # the manifest's signature and its checksum list's
    assert judged
    for f in judged:
        f.unlink()
    # gpgv hangs (an overloaded machine, a stuck agent): the signature is refused this time ...
    hanging = tmp_path / "gpgv-hangs"
    hanging.write_text("#!/bin/sh\nexec sleep 60\n")
    hanging.chmod(0o755)
    hung = snap.cli("backups", "verify", "v0.1.0", env={
        **snap.env, "TAYDASH_GPGV": str(hanging), "TAYDASH_SIGNATURE_TIMEOUT": "1"})
    assert hung.returncode != 0 and "gpgv hung" in hung.stdout + hung.stderr, hung.stderr
    assert _remembered(snap) == []
    # ... and judged again the next time, when it holds (and only then remembered).
    again = snap.cli("backups", "verify", "v0.1.0")
    assert again.returncode == 0 and "(allowed)" in again.stderr, again.stdout + again.stderr
    assert _remembered(snap) == judged
