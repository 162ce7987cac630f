"""A year of keys: rotation, retirement, revocation and expiry never lock a team out of its
backups, and never make a new signature by an old key count (real gpg, real stores)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from testing import clock, docs, keys
from testing.gitrepo import run
from testing.snap import Snap

DAY = 86400


def _policy(snap: Snap, ring: keys.Keyring, allowed: str, *, retired: str = "",
            until: str = "", revoked: str = "", signing: str | None = None) -> None:
    """[tags] allows ``allowed``; ``retired`` (until the day ``until``) and ``revoked`` keys
    are listed as a team would after a rotation; manifests are required to be signed."""
    names = [n for n in (allowed, retired, revoked) if n]
    snap.repos.write(".taydash/keys.asc", ring.export(*names))
    snap.repos.git("config", "user.signingkey", ring.keys[signing or allowed].fingerprint)
    lines = [f'openpgp_fingerprints = ["{ring.keys[allowed].fingerprint}"]']
    if retired:
        lines.append(f'retired_openpgp_fingerprints = [{{fingerprint = '
                     f'"{ring.keys[retired].fingerprint}", until = "{until}"}}]')
    if revoked:
        lines.append(f'revoked_openpgp_fingerprints = ["{ring.keys[revoked].fingerprint}"]')
    toml = snap.toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = "required"\n', 1)
    snap.repos.configure(toml + "[tags]\nrequire_signed = false\n" + "\n".join(lines) + "\n")


def _signed_at(snap: Snap, ring: keys.Keyring, at: float) -> dict[str, str]:
    """The environment of a snapshot whose manifest signature is made at ``at`` (gpg's own
    faked time for signing only: the signature's creation time is what a reader judges)."""
    wrapper = ring.home / f"sign-at-{int(at)}"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *--detach-sign*) exec gpg '
                       f'--faked-system-time={int(at)}! "$@" ;; esac\nexec gpg "$@"\n')
    wrapper.chmod(0o755)
    return {**snap.env, "TAYDASH_GPG": str(wrapper)}


def test_a_rotation_keeps_what_the_old_key_signed_and_refuses_what_it_signs_now(
        snap: Snap, gnupghome: keys.Keyring) -> None:
    ring, now = gnupghome, time.time()
    old, new = ring.keys["old"].fingerprint, ring.keys["trusted"].fingerprint
    today = datetime.now(timezone.utc).date()
    _policy(snap, ring, "old")
    for n, tag in enumerate(("v0.1.0", "v0.2.0")):
        snap.repos.commit(tag)
        proc = snap.tag(tag, env=_signed_at(snap, ring, now - (3 - n) * DAY))
        assert proc.returncode == 0 and "done" in proc.stderr, proc.stderr
    signed_by_old = snap.raw_get("manifests/v0.1.0.json.sig")
    # The key is rotated: the new one signs from today on, the old one stopped yesterday.
    until = (today - timedelta(days=1)).isoformat()
    _policy(snap, ring, "trusted", retired="old", until=until)
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert f"signed by retired key {old} (until {until})" in proc.stderr
    listed = json.loads(snap.cli("backups", "list", "--json").stdout)
    assert listed[0]["manifest"] == f"signed by retired key {old} (until {until})"
    doctor = snap.cli("doctor").stdout
    assert "WARN backups signed by retired keys 2: v0.1.0, v0.2.0" in doctor, doctor
    assert "fix: taydash backups resign --all" in doctor
    target = f"{snap.db}_rotated"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    try:
        assert proc.returncode == 0 and "signed by retired key" in proc.stderr, proc.stderr
    finally:
        snap.pg.drop_db(target)
    # Someone with the old key signs the manifest again today: after the key was retired.
    snap.raw_put("manifests/v0.1.0.json.sig", ring.gpg(
        "--armor", "--detach-sign", "--local-user", old,
        input=snap.raw_get("manifests/v0.1.0.json").decode()).encode())
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1 and f"after it was retired on {until}" in proc.stderr
    snap.raw_put("manifests/v0.1.0.json.sig", signed_by_old)
    # The retired key cannot sign a new manifest (user.signingkey left on it by mistake).
    _policy(snap, ring, "trusted", retired="old", until=until, signing="old")
    snap.repos.commit("v0.3.0")
    proc = snap.tag("v0.3.0")
    assert f"user.signingkey {old} is retired (since {until})" in proc.stderr, proc.stderr
    assert not snap.manifest_exists("v0.3.0")
    # A key simply dropped from the configuration: said as such, never as tampering.
    _policy(snap, ring, "trusted")
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 1, proc.stderr
    assert "its key is not in this configuration" in proc.stderr
    assert "Nothing says the backup was altered" in proc.stderr
    assert "changed after it was signed" not in proc.stderr
    # resign moves v0.1.0 to the new key; then the old key is revoked.
    _policy(snap, ring, "trusted", retired="old", until=until)
    proc = snap.cli("backups", "resign", "v0.1.0")  # no terminal, no --yes: nothing changes
    assert proc.returncode == 1 and "nothing was re-signed" in proc.stderr
    assert snap.raw_get("manifests/v0.1.0.json.sig") == signed_by_old
    proc = snap.cli("backups", "resign", "v0.1.0", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"signed by retired key {old} (until {until}) -> signed by {new}" in proc.stdout
    assert "manifests/v0.1.0.json.sig.next" not in snap.raw_keys("manifests/")
    # A resign cut between removing the old signature and writing the new one: readers
    # check the waiting one, and a rerun puts it in place.
    resigned = snap.raw_get("manifests/v0.1.0.json.sig")
    snap.raw_put("manifests/v0.1.0.json.sig.next", resigned)
    snap.raw_delete("manifests/v0.1.0.json.sig")
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0 and f"signed by {new} (allowed)" in proc.stderr, proc.stderr
    again = snap.cli("backups", "resign", "v0.1.0", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "manifests/v0.1.0.json.sig" in snap.raw_keys("manifests/")
    assert "manifests/v0.1.0.json.sig.next" not in snap.raw_keys("manifests/")
    again = snap.cli("backups", "resign", "v0.1.0", "--yes")
    assert again.returncode == 0 and "already signed by the current key" in again.stdout
    _policy(snap, ring, "trusted", revoked="old")
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0 and f"signed by {new} (allowed)" in proc.stderr, proc.stderr
    # v0.2.0 was not re-signed: the revoked key's signature is believed at no date.
    proc = snap.cli("backups", "verify", "v0.2.0")
    assert proc.returncode == 1 and "is revoked" in proc.stderr and "compromised" in proc.stderr


def test_resign_of_backups_already_on_the_current_key_makes_no_signature_per_backup(
        snap: Snap, gnupghome: keys.Keyring, tmp_path: Path) -> None:
    ring = gnupghome
    _policy(snap, ring, "trusted")
    tags = ("v0.1.0", "v0.2.0", "v0.3.0")
    for tag in tags:
        snap.repos.commit(tag)
        proc = snap.tag(tag)
        assert proc.returncode == 0 and "done" in proc.stderr, proc.stderr
    before = {tag: snap.raw_get(f"manifests/{tag}.json.sig") for tag in tags}
    # The real gpg, each signature it is asked for written down first.
    made, wrapper = tmp_path / "signatures-made", tmp_path / "gpg-counting"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *--detach-sign*) echo sign >> "{made}" ;; '
                       'esac\nexec gpg "$@"\n')
    wrapper.chmod(0o755)
    proc = snap.cli("backups", "resign", "--all", "--yes",
                    env={**snap.env, "TAYDASH_GPG": str(wrapper)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for tag in tags:
        assert f"{tag:<20} already signed by the current key" in proc.stdout, proc.stdout
        assert snap.raw_get(f"manifests/{tag}.json.sig") == before[tag]
    assert "nothing to re-sign" in proc.stderr
    # Two whatever the number of backups: the check that the key signs without a terminal,
    # and the one that learns which key today's policy names. Signing each manifest and its
    # checksum list only to compare signers (as before) made 1 + 2 per backup, here 7.
    assert made.read_text().split() == ["sign", "sign"]


def test_a_signature_made_before_the_key_expired_stays_valid(snap: Snap,
                                                             gnupghome: keys.Keyring) -> None:
    # "expired" was made ten days ago for two days: it signed on day -9, expired on day -8.
    ring = gnupghome
    _policy(snap, ring, "expired")
    snap.repos.commit("v0.1.0")
    assert snap.tag("v0.1.0", env=_signed_at(snap, ring, time.time() - 9 * DAY)).returncode == 0
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert f"signed by {ring.keys['expired'].fingerprint} (allowed)" in proc.stderr


def test_a_retired_key_in_the_configuration_is_read_strictly(snap: Snap,
                                                             gnupghome: keys.Keyring) -> None:
    fpr = gnupghome.keys["old"].fingerprint
    for bad in (f'[{{fingerprint = "{fpr}"}}]', f'[{{fingerprint = "{fpr}", until = "soon"}}]',
                f'["{fpr}"]', '[{fingerprint = "xyz", until = "2026-01-01"}]'):
        snap.repos.configure(snap.toml + f'[tags]\nrequire_signed = false\n'
                             f'retired_openpgp_fingerprints = {bad}\n')
        proc = snap.cli("backups", "list")
        assert proc.returncode == 2 and "retired_openpgp_fingerprints" in proc.stderr, bad
    snap.repos.configure(snap.toml + f'[tags]\nopenpgp_fingerprints = ["{fpr}"]\n'
                         f'revoked_openpgp_fingerprints = ["{fpr}"]\n')
    proc = snap.cli("backups", "list")
    assert proc.returncode == 2 and "allowed and also retired or revoked" in proc.stderr


# The clock is faked back three days for the snapshot; S3 signs requests with the clock, so
# the file store only (the rule judged here is the store's content, not its transport).
@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_an_ssh_key_retired_with_valid_before_keeps_what_it_signed(
        snap: Snap, ssh_keys: dict[str, keys.SshKey]) -> None:
    alice = ssh_keys["alice"]
    snap.repos.git("config", "gpg.format", "ssh")
    snap.repos.git("config", "user.signingkey", str(alice.private))
    signers = snap.repos.work / ".taydash" / "allowed_signers"
    snap.repos.write(".taydash/allowed_signers",
                     keys.allowed_signers_line(alice, 'namespaces="git,taydash-manifest"'))
    # No config bundle: it is encrypted to an OpenPGP key made today, which a clock three
    # days back would see as made in the future.
    toml = snap.toml.split("[snapshots.config]")[0]
    snap.repos.configure(toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = '
                                      '"required"\n', 1)
                         + '[tags]\nrequire_signed = false\nformats = ["ssh"]\n')
    made = snap.tag("v0.1.0", env=clock.shifted(snap.env, -3 * DAY))
    assert made.returncode == 0 and "done" in made.stderr, made.stderr
    # Retired the way git reads it: valid-before the day it stopped signing (yesterday).
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y%m%d")
    signers.write_text(keys.allowed_signers_line(
        alice, f'namespaces="git,taydash-manifest",valid-before="{yesterday}"'))
    proc = snap.cli("backups", "verify", "v0.1.0")
    assert proc.returncode == 0 and f"signed by {alice.principal} (allowed)" in proc.stderr, \
        proc.stderr
    # Signed today (after valid-before): refused, and said as not valid then.
    snap.repos.commit("v0.2.0")
    signers.write_text(keys.allowed_signers_line(alice, 'namespaces="git,taydash-manifest"'))
    assert snap.tag("v0.2.0").returncode == 0
    signers.write_text(keys.allowed_signers_line(
        alice, f'namespaces="git,taydash-manifest",valid-before="{yesterday}"'))
    proc = snap.cli("backups", "verify", "v0.2.0")
    assert proc.returncode == 1 and "not valid then" in proc.stderr, proc.stderr


def test_the_readme_rotation_runs_as_written(snap: Snap, gnupghome: keys.Keyring) -> None:
    ring, now = gnupghome, time.time()
    old, new = ring.keys["old"].fingerprint, ring.keys["trusted"].fingerprint
    _policy(snap, ring, "old")
    for n, tag in enumerate(("v0.1.0", "v0.2.0")):
        snap.repos.commit(tag)
        assert snap.tag(tag, env=_signed_at(snap, ring, now - (3 - n) * DAY)).returncode == 0
    day = datetime.now(timezone.utc).date().isoformat()

    def config(name: str) -> str:
        text = docs.block(name, "toml")
        return (text.replace("NEW_FINGERPRINT", new).replace("OLD_FINGERPRINT", old)
                .replace("YYYY-MM-DD", day).replace("[tags]\n", "[tags]\nrequire_signed = false\n"))

    toml = snap.toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = "required"\n', 1)
    snap.repos.write(".taydash.toml", toml + config("rotate-signing-key-config"))
    env = {**snap.env, "OLD": old, "NEW": new,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{snap.env['PATH']}"}
    proc = run("sh", "-e", "-c", docs.block("rotate-signing-key"), cwd=snap.repos.work, env=env,
               check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"signed by retired key {old} (until {day})" in proc.stderr
    assert proc.stdout.count(f"-> signed by {new}") == 2
    snap.repos.configure(toml + config("revoke-signing-key-config"))
    proc = snap.cli("backups", "verify", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(f"signed by {new} (allowed)") == 2, proc.stdout
