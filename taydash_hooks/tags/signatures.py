"""Verifying tag signatures: OpenPGP in an isolated keyring, SSH with ssh-keygen -Y verify.

Decisions are taken on gpg's machine-readable status lines (VALIDSIG's
primary-key fingerprint), never on GOODSIG alone and never on an exit code:
gpg exits 0 for expired and revoked keys. Every call has a timeout and a
hung or crashing tool rejects the tag (fails closed).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from taydash_hooks import gnupg, process
from taydash_hooks.errors import environment, usage

DEFAULT_TIMEOUT = 30.0


def signature_timeout() -> float:
    try:
        return float(os.environ.get("TAYDASH_SIGNATURE_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def ssh_keygen() -> str:
    return os.environ.get("TAYDASH_SSH_KEYGEN", "ssh-keygen")


class At(enum.Enum):
    """When a signature is judged. A new tag entering the history is judged now: every key
    must be valid today. History (an existing tag in a drill, a stored manifest) is judged
    at the signature's own time, so a key rotated out or expired since leaves what it signed
    valid (git's own -Overify-time for SSH)."""

    NOW = "now"
    SIGNED = "when signed"


class Refusal(enum.Enum):
    """Why a signature was refused: readers word their sentence on this, never on text."""

    ALTERED = "altered"  # the signed bytes do not match: changed after signing
    NOT_CONFIGURED = "not configured"  # a key the configuration does not list (gone, unknown)
    REVOKED = "revoked"  # compromised: nothing it signed is believed
    RETIRED = "retired"  # signed after its key was retired
    EXPIRED = "expired"  # signed after its key expired
    OTHER = "other"  # malformed, hung, several signatures, wrong namespace


@dataclass(frozen=True)
class Rotation:
    """The configured key lifecycle: retired keys with the first second they no longer sign,
    revoked keys, and when signatures are judged."""

    retired: dict[str, float] = field(default_factory=dict)
    retired_days: dict[str, str] = field(default_factory=dict)  # fingerprint -> "YYYY-MM-DD"
    revoked: frozenset[str] = frozenset()
    at: At = At.NOW


@dataclass(frozen=True)
class SigCheck:
    """The outcome of one signature verification."""

    ok: bool
    signer: str  # primary fingerprint or ssh principal, "" when unknown
    reason: str
    refusal: Refusal | None = None  # set when not ok
    retired: str = ""  # "YYYY-MM-DD" when a retired key made it before that day


class OpenPgpKeyring:
    """A throwaway GNUPGHOME holding only the public keys of ``tags.openpgp_keys``."""

    def __init__(self, keys_file: Path, allowed: tuple[str, ...], allow_expired: bool,
                 cache_dir: Path | None = None, rotation: Rotation | None = None) -> None:
        self.keys_file = keys_file
        self.cache_dir = cache_dir  # where built keyrings are kept, by the keys file's hash
        self.allowed = {f.upper() for f in allowed}
        self.allow_expired = allow_expired
        self.rotation = rotation or Rotation()
        self._expiry: dict[str, float] | None = None
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
        try:
            return gnupg.run("--no-autostart", "--trust-model", "always", *args, input=input,
                             timeout=signature_timeout(), homedir=self.home)
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
        argv = gnupg.gpgv_argv("--homedir", str(self.home), "--keyring", str(self.keyring),
                               "--status-fd", "1", str(sig), "-")
        try:
            res = process.run(argv, input=payload, timeout=signature_timeout())
        except process.Timeout as exc:
            return SigCheck(False, "", f"gpgv hung: {exc}", Refusal.OTHER)
        finally:
            sig.unlink()
        return decide_openpgp(res.out, self.allowed, self.allow_expired, self.rotation,
                              self.key_expiry)

    def key_expiry(self, fingerprint: str) -> float | None:
        """When the (sub)key ``fingerprint`` expires (UNIX time), None when it does not; read
        once, only when a signature by an expired key is to be judged."""
        if self._expiry is None:
            assert self.keyring is not None
            found, _ = gnupg.list_keys(timeout=signature_timeout(), homedir=self.home,
                                       keyring=self.keyring)
            self._expiry = {}
            for key in found:
                for fpr, expires in [(key.fingerprint, key.expires),
                                     *((s.fingerprint, s.expires) for s in key.subkeys)]:
                    if expires is not None:
                        self._expiry[fpr] = expires
        return self._expiry.get(fingerprint.upper())


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def decide_openpgp(status: str, allowed: set[str], allow_expired: bool,
                   rotation: Rotation | None = None,
                   key_expiry: Callable[[str], float | None] | None = None) -> SigCheck:
    """The verdict from gpg's ``--status-fd`` lines, with the key lifecycle of ``rotation``."""
    rotation = rotation or Rotation()
    lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    words = {w[0] for w in lines if w}
    if sum(1 for w in lines if w and w[0] == "NEWSIG") > 1:
        return SigCheck(False, "", "several signatures in one block", Refusal.OTHER)
    if "BADSIG" in words:
        return SigCheck(False, "", "bad signature: the tag text does not match its signature",
                        Refusal.ALTERED)
    if "NO_PUBKEY" in words or any(w[0] == "ERRSIG" and w[-1] == "9" for w in lines if w):
        keyid = next((w[1] for w in lines if w and w[0] in ("NO_PUBKEY", "ERRSIG")), "?")
        return SigCheck(False, keyid, f"unknown key {keyid}: not in tags.openpgp_keys",
                        Refusal.NOT_CONFIGURED)
    valid = [w for w in lines if w and w[0] == "VALIDSIG"]
    if len(valid) != 1:
        return SigCheck(False, "", "signature could not be verified", Refusal.OTHER)
    fields = valid[0]
    primary = (fields[10] if len(fields) > 10 else fields[1]).upper()
    signed_at = float(fields[3]) if len(fields) > 3 and fields[3].isdigit() else None
    if primary in rotation.revoked or "REVKEYSIG" in words or "KEYREVOKED" in words:
        return SigCheck(False, primary, f"key {primary} is revoked: nothing it signed is believed",
                        Refusal.REVOKED)
    retired_day = ""
    if primary not in allowed:
        if primary not in rotation.retired:
            return SigCheck(False, primary,
                            f"signer {primary} is not in tags.openpgp_fingerprints (a key gone "
                            "from the configuration; a rotated-out key belongs in "
                            "retired_openpgp_fingerprints with the day it stopped signing)",
                            Refusal.NOT_CONFIGURED)
        retired_day = rotation.retired_days.get(primary, _day(rotation.retired[primary]))
        if rotation.at is At.NOW:
            return SigCheck(False, primary, f"key {primary} was retired on {retired_day}: it "
                            "can no longer sign a new tag or manifest", Refusal.RETIRED)
        if signed_at is None or signed_at >= rotation.retired[primary]:
            return SigCheck(False, primary, f"signed by retired key {primary} after it was "
                            f"retired on {retired_day}", Refusal.RETIRED)
    if "EXPSIG" in words or "SIGEXPIRED" in words:
        return SigCheck(False, primary, "the signature has expired", Refusal.EXPIRED)
    note = "good signature by an allowed key"
    if "EXPKEYSIG" in words or "KEYEXPIRED" in words:
        expired = key_expiry(fields[1]) if key_expiry else None
        if rotation.at is At.SIGNED and signed_at is not None and expired is not None \
                and signed_at < expired:
            # Made while the key was valid: it stays valid after the key expires.
            note = f"good signature, made before key {primary} expired on {_day(expired)}"
        elif allow_expired:
            note = "good signature by an expired but allowed key"
        elif rotation.at is At.SIGNED:
            when = f" on {_day(expired)}" if expired else ""
            return SigCheck(False, primary, f"key {primary} expired{when} and the signature was "
                            "made after that (allow_expired_keys = false)", Refusal.EXPIRED)
        else:
            return SigCheck(False, primary, f"key {primary} has expired (allow_expired_keys = "
                            "false)", Refusal.EXPIRED)
    elif "GOODSIG" not in words:
        return SigCheck(False, primary, "signature could not be verified", Refusal.OTHER)
    if retired_day:
        return SigCheck(True, primary, f"signed by retired key {primary} (until {retired_day})",
                        retired=retired_day)
    return SigCheck(True, primary, note)


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
               revoked: Path | None = None, namespace: str = "git",
               signed_at: float | None = None) -> SigCheck:
    """ssh-keygen -Y verify in ``namespace`` (``git`` for tags) against ``allowed_signers``, at
    the current time, or at ``signed_at`` (history: the tag's or manifest's own date, as git
    verifies with -Overify-time) so a key retired since (``valid-before``) still holds.

    A new tag is judged now, not by its tagger date: the signer chooses that date, so judging
    valid-after/valid-before against it would let them backdate into a window.
    """
    now = time.strftime("%Y%m%d%H%M%S", time.gmtime(signed_at))
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
                when = "then" if signed_at is not None else "now"
                return SigCheck(False, "", f"SSH key is not in tags.allowed_signers (or not valid "
                                f"{when})", Refusal.NOT_CONFIGURED)
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
                return SigCheck(False, principal, "SSH key is revoked (gpg.ssh.revocationFile)",
                                Refusal.REVOKED)
        except process.Timeout as exc:
            return SigCheck(False, "", f"ssh-keygen hung: {exc}", Refusal.OTHER)
    if "namespace" in text.lower():
        return SigCheck(False, principal, f"SSH signature is not for namespace {namespace}",
                        Refusal.OTHER)
    last = text.strip().splitlines()[-1] if text.strip() else f"exit {res.returncode}"
    return SigCheck(False, principal, f"SSH signature rejected: {last}", Refusal.ALTERED)
