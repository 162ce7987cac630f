"""Verifying tag signatures: OpenPGP in an isolated keyring, SSH with ssh-keygen -Y verify.

Decisions are taken on gpg's machine-readable status lines (VALIDSIG's
primary-key fingerprint), never on GOODSIG alone and never on an exit code:
gpg exits 0 for expired and revoked keys. Every call has a timeout and a
hung or crashing tool rejects the tag (fails closed).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import process
from taydash_hooks.errors import environment, usage

DEFAULT_TIMEOUT = 30.0


def signature_timeout() -> float:
    try:
        return float(os.environ.get("TAYDASH_SIGNATURE_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def gpg_program() -> str:
    # Like git's gpg.program: lets a packager point at gpg2 (and tests at a hung one).
    return os.environ.get("TAYDASH_GPG", "gpg")


# Every gpg call uses the local keyring only: an unknown recipient or signer is never looked
# up over the network (WKD, keyservers), it fails at once with the fix.
LOCAL_ONLY = ("--auto-key-locate", "clear,local", "--no-auto-key-retrieve")


def _gpgv() -> str:
    return os.environ.get("TAYDASH_GPGV", "gpgv")


def ssh_keygen() -> str:
    return os.environ.get("TAYDASH_SSH_KEYGEN", "ssh-keygen")


@dataclass(frozen=True)
class SigCheck:
    """The outcome of one signature verification."""

    ok: bool
    signer: str  # primary fingerprint or ssh principal, "" when unknown
    reason: str


class OpenPgpKeyring:
    """A throwaway GNUPGHOME holding only the public keys of ``tags.openpgp_keys``."""

    def __init__(self, keys_file: Path, allowed: tuple[str, ...], allow_expired: bool,
                 cache_dir: Path | None = None) -> None:
        self.keys_file = keys_file
        self.cache_dir = cache_dir  # where built keyrings are kept, by the keys file's hash
        self.allowed = {f.upper() for f in allowed}
        self.allow_expired = allow_expired
        self.home: Path | None = None
        self.keyring: Path | None = None
        self._serial = itertools.count()

    def __enter__(self) -> OpenPgpKeyring:
        if not self.keys_file.is_file():
            raise usage(
                f"tags.openpgp_keys file {self.keys_file} does not exist; export the allowed "
                f"public keys into it (gpg --export --armor FINGERPRINT > {self.keys_file})."
            )
        self.home = Path(tempfile.mkdtemp(prefix="tdk-"))  # short: gpg socket paths are limited
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        assert self.home is not None
        import hashlib

        digest = hashlib.sha256(self.keys_file.read_bytes()).hexdigest()
        cached = self.cache_dir / f"{digest}.gpg" if self.cache_dir else None
        if cached is not None and cached.is_file():
            # The same keys file was checked and converted before: no gpg call at all.
            self.keyring = cached
            return
        shown = self._gpg("--show-keys", "--with-colons", str(self.keys_file))
        if re.search(r"^(sec|ssb):", shown.out, re.M):
            raise usage(
                f"tags.openpgp_keys file {self.keys_file} contains secret keys; a committed file "
                "must hold public keys only (gpg --export --armor, not --export-secret-keys)."
            )
        res = self._gpg("--import", str(self.keys_file))
        if res.returncode not in (0, 2):  # 2: some keys were skipped, e.g. duplicates
            raise usage(f"tags.openpgp_keys file {self.keys_file} could not be imported by gpg.")
        # Verification runs gpgv on a plain keyring: half the start-up cost of gpg,
        # no agent, no trust database, and the same status lines.
        exported = self._gpg("--export")
        self.keyring = self.home / "allowed.gpg"
        self.keyring.write_bytes(exported.stdout)
        if cached is not None:
            from taydash_hooks.errors import TaydashError
            from taydash_hooks.statefiles import write_private

            # Only a speed-up: a read-only git dir (or a planted symlink) is fine.
            with contextlib.suppress(OSError, TaydashError):
                write_private(cached, exported.stdout)

    def __exit__(self, *exc: object) -> None:
        if self.home is None:
            return
        if any(self.home.glob("S.*")):
            with contextlib.suppress(Exception):
                process.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], timeout=10)
        shutil.rmtree(self.home, ignore_errors=True)

    def _gpg(self, *args: str, input: bytes | None = None) -> process.Result:
        assert self.home is not None
        # --no-autostart: public keys need no agent, and starting one costs more than the rest.
        argv = [gpg_program(), "--homedir", str(self.home), "--batch", "--no-tty", "--no-autostart",
                "--no-auto-key-retrieve", "--trust-model", "always", *args]
        try:
            return process.run(argv, input=input, timeout=signature_timeout())
        except process.Timeout as exc:
            # Without the keyring no tag can be judged: fail closed, loudly.
            raise environment(f"building the tag-policy keyring failed: {exc}.") from None

    def verify(self, payload: bytes, signature: bytes) -> SigCheck:
        """Verify a detached signature over ``payload`` and apply the allow-list."""
        assert self.home is not None and self.keyring is not None
        # One file per call in the keyring's own temp dir (thread-safe names):
        # a temp dir per signature costs more than gpgv itself.
        sig = self.home / f"sig-{next(self._serial)}.asc"
        sig.write_bytes(signature)
        argv = [_gpgv(), "--homedir", str(self.home), "--keyring", str(self.keyring),
                "--status-fd", "1", str(sig), "-"]
        try:
            res = process.run(argv, input=payload, timeout=signature_timeout())
        except process.Timeout as exc:
            return SigCheck(False, "", f"gpgv hung: {exc}")
        finally:
            sig.unlink()
        return decide_openpgp(res.out, self.allowed, self.allow_expired)


def decide_openpgp(status: str, allowed: set[str], allow_expired: bool) -> SigCheck:
    """The verdict from gpg's ``--status-fd`` lines."""
    lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    words = {w[0] for w in lines if w}
    if sum(1 for w in lines if w and w[0] == "NEWSIG") > 1:
        return SigCheck(False, "", "several signatures in one block")
    if "BADSIG" in words:
        return SigCheck(False, "", "bad signature: the tag text does not match its signature")
    if "NO_PUBKEY" in words or any(w[0] == "ERRSIG" and w[-1] == "9" for w in lines if w):
        keyid = next((w[1] for w in lines if w and w[0] in ("NO_PUBKEY", "ERRSIG")), "?")
        return SigCheck(False, keyid, f"unknown key {keyid}: not in tags.openpgp_keys")
    valid = [w for w in lines if w and w[0] == "VALIDSIG"]
    if len(valid) != 1:
        return SigCheck(False, "", "signature could not be verified")
    fields = valid[0]
    primary = (fields[10] if len(fields) > 10 else fields[1]).upper()
    if primary not in allowed:
        return SigCheck(False, primary, f"signer {primary} is not in tags.openpgp_fingerprints")
    if "REVKEYSIG" in words or "KEYREVOKED" in words:
        return SigCheck(False, primary, f"key {primary} is revoked")
    if "EXPSIG" in words or "SIGEXPIRED" in words:
        return SigCheck(False, primary, "the signature has expired")
    if "EXPKEYSIG" in words or "KEYEXPIRED" in words:
        if not allow_expired:
            return SigCheck(False, primary, f"key {primary} has expired (allow_expired_keys = false)")
        return SigCheck(True, primary, "good signature by an expired but allowed key")
    if "GOODSIG" not in words:
        return SigCheck(False, primary, "signature could not be verified")
    return SigCheck(True, primary, "good signature by an allowed key")


_SIGNERS_LINE = re.compile(
    r"""^(?P<principals>\S+)\s+(?:(?P<options>(?:[A-Za-z-]+(?:="[^"]*")?,?)+)\s+)?"""
    r"""(?P<type>(?:ssh|ecdsa|sk)-[\w@.-]+)\s+(?P<blob>[A-Za-z0-9+/=]+)(?:\s.*)?$"""
)


def check_allowed_signers(path: Path) -> None:
    """Refuse (exit 2) a missing allowed_signers file or a line ssh-keygen would misread."""
    if not path.is_file():
        raise usage(f"tags.allowed_signers file {path} does not exist.")
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not _SIGNERS_LINE.match(text):
            raise usage(
                f"{path}:{n}: malformed allowed_signers line (expected "
                "'PRINCIPALS [OPTIONS] KEYTYPE BASE64KEY')."
            )


def verify_ssh(payload: bytes, signature: bytes, allowed_signers: Path,
               revoked: Path | None = None, namespace: str = "git") -> SigCheck:
    """ssh-keygen -Y verify in ``namespace`` (``git`` for tags) against ``allowed_signers``, at
    the current time.

    The current time, not the tagger date: the signer chooses the tagger date,
    so judging valid-after/valid-before against it would let them backdate.
    """
    now = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="tds-") as tmp:
        sig = Path(tmp) / "sig"
        sig.write_bytes(signature)
        opts = ["-O", f"verify-time={now}"]
        rev = ["-r", str(revoked)] if revoked else []
        try:
            found = process.run(
                [ssh_keygen(), "-Y", "find-principals", "-f", str(allowed_signers), "-s", str(sig),
                 *opts], timeout=signature_timeout())
            principals = found.out.split() if found.returncode == 0 else []
            if not principals:
                return SigCheck(False, "", "SSH key is not in tags.allowed_signers (or not valid now)")
            principal = principals[0]
            verify = [ssh_keygen(), "-Y", "verify", "-n", namespace, "-f", str(allowed_signers),
                      "-I", principal, "-s", str(sig), *opts]
            res = process.run([*verify, *rev], input=payload, timeout=signature_timeout())
            text = res.out + res.err
            if res.returncode == 0 and "Good" in text:
                return SigCheck(True, principal, "good SSH signature by an allowed signer")
            # ssh-keygen says only "Could not verify" for a revoked key: ask again
            # without the revocation list to name the reason.
            if rev and process.run(verify, input=payload, timeout=signature_timeout()).returncode == 0:
                return SigCheck(False, principal, "SSH key is revoked (gpg.ssh.revocationFile)")
        except process.Timeout as exc:
            return SigCheck(False, "", f"ssh-keygen hung: {exc}")
    if "namespace" in text.lower():
        return SigCheck(False, principal, f"SSH signature is not for namespace {namespace}")
    last = text.strip().splitlines()[-1] if text.strip() else f"exit {res.returncode}"
    return SigCheck(False, principal, f"SSH signature rejected: {last}")
