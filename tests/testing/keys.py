"""Throwaway OpenPGP and SSH signing keys made with the real gpg and ssh-keygen."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from testing.gitrepo import run

DAY = 86400


@dataclass
class GpgKey:
    name: str
    email: str
    fingerprint: str
    subkey: str | None = None  # fingerprint of a signing subkey, when made


@dataclass
class Keyring:
    """A GNUPGHOME with keys for every case of the tag policy."""

    home: Path
    keys: dict[str, GpgKey] = field(default_factory=dict)

    def gpg(self, *args: str, input: str | None = None, faked: int | None = None) -> str:
        argv = ["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode",
                "loopback", "--passphrase", ""]
        if faked is not None:
            argv.append(f"--faked-system-time={faked}!")
        return run(*argv, *args, input=input).stdout

    def export(self, *names: str) -> str:
        return self.gpg("--armor", "--export", *[self.keys[n].fingerprint for n in names])

    def faked_gpg(self, at: int, extra: str = "") -> Path:
        """A gpg wrapper for git's gpg.program that signs as if at time ``at``."""
        path = self.home / f"gpg-at-{at}{'-x' if extra else ''}"
        path.write_text(
            f'#!/bin/sh\nexec gpg --faked-system-time={at}! {extra} "$@"\n'
        )
        path.chmod(0o755)
        return path


def _make(ring: Keyring, name: str, *, created: int | None = None,
          expire: str = "never") -> GpgKey:
    email = f"{name}@example.test"
    ring.gpg("--quick-gen-key", f"{name} <{email}>", "ed25519", "sign", expire, faked=created)
    out = ring.gpg("--with-colons", "--list-keys", email)
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    key = GpgKey(name, email, fpr)
    ring.keys[name] = key
    return key


def make_key(ring: Keyring, name: str, created: int, encrypt: bool = False) -> GpgKey:
    """A signing key ``name`` made at ``created`` (UNIX time), with an encryption subkey when
    ``encrypt``: keys a simulated span can use from its first day on."""
    key = _make(ring, name, created=created)
    if encrypt:
        ring.gpg("--quick-add-key", key.fingerprint, "cv25519", "encr", "never", faked=created)
    return key


def make_keyring() -> Keyring:
    """Keys: trusted, untrusted, expired (expired now), revoked (after use), subkeyed."""
    home = Path(tempfile.mkdtemp(prefix="tdg-", dir="/tmp"))  # short: gpg-agent socket path
    os.chmod(home, 0o700)
    ring = Keyring(home)
    trusted = _make(ring, "trusted")
    # An encryption subkey too: config bundles are encrypted to this key.
    ring.gpg("--quick-add-key", trusted.fingerprint, "cv25519", "encr", "never")
    _make(ring, "untrusted")
    # Made 10 days ago, valid for 2 days: expired now, usable at day -9.
    _make(ring, "expired", created=int(time.time()) - 10 * DAY, expire="2d")
    _make(ring, "revoked")
    _make(ring, "old", created=int(time.time()) - 10 * DAY)  # for backdated signatures
    _make(ring, "stranger")  # signs, but is in no keys file handed to the policy
    sub = _make(ring, "subkeyed")
    ring.gpg("--quick-add-key", sub.fingerprint, "ed25519", "sign", "never")
    out = ring.gpg("--with-colons", "--list-keys", sub.fingerprint)
    fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
    sub.subkey = fprs[-1]
    return ring


def export_revoked(ring: Keyring, name: str) -> str:
    """The public key with its revocation applied, as a team would publish it.

    Revoked in a scratch keyring so the signing keyring can still sign with it
    (a tag signed before the key was revoked).
    """
    fpr = ring.keys[name].fingerprint
    cert = (ring.home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    # gpg guards the certificate with a leading colon against accidental import.
    cert = cert.replace(":-----BEGIN PGP PUBLIC", "-----BEGIN PGP PUBLIC")
    scratch = Keyring(Path(tempfile.mkdtemp(prefix="tdr-", dir="/tmp")))
    try:
        os.chmod(scratch.home, 0o700)
        scratch.gpg("--import", input=ring.export(name))
        scratch.gpg("--import", input=cert)
        return scratch.gpg("--armor", "--export", fpr)
    finally:
        close(scratch)


def close(ring: Keyring) -> None:
    run("gpgconf", "--homedir", str(ring.home), "--kill", "all", check=False)
    shutil.rmtree(ring.home, ignore_errors=True)


@dataclass
class SshKey:
    name: str
    private: Path
    public: str  # "ssh-ed25519 AAAA... comment"
    principal: str


def make_ssh_key(folder: Path, name: str) -> SshKey:
    """An ed25519 key with no passphrase; its principal is ``<name>@example.test``."""
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / name
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", private)
    public = (folder / f"{name}.pub").read_text().strip()
    return SshKey(name, private, public, f"{name}@example.test")


def allowed_signers_line(key: SshKey, options: str = 'namespaces="git"') -> str:
    kind, blob = key.public.split()[:2]
    return f"{key.principal} {options} {kind} {blob}\n"


def agents(under: Path) -> list[int]:
    """Pids of the gpg-agents whose home is below ``under``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"gpg-agent") and any(
                str(under).encode() in a for a in argv):
            found.append(int(proc.name))
    return found


def close_keyrings(under: Path) -> None:
    """``gpgconf --kill all`` for every GnuPG home below ``under``."""
    if not under.exists():
        return
    homes = {p.parent for p in under.rglob("pubring.kbx")} | {
        p.parent for p in under.rglob("S.gpg-agent*")}
    for home in homes:
        run("gpgconf", "--homedir", str(home), "--kill", "all", check=False)
