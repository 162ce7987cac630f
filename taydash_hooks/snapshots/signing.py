"""Signed manifests: the chain from the signed tag to every stored byte.

The tag is signed; the manifest lists every artifact's SHA-256. Without a signature on the
manifest, whoever can write the store could rewrite an artifact, its sidecar and the
manifest consistently. So a snapshot signs its manifest with the key that signs release
tags (``user.signingkey``, OpenPGP or SSH) into ``manifests/<tag>.json.sig``, checkable by
hand::

    gpg --verify manifests/v1.0.0.json.sig manifests/v1.0.0.json
    ssh-keygen -Y verify -f .taydash/allowed_signers -I you@example.com \\
        -n taydash-manifest -s manifests/v1.0.0.json.sig < manifests/v1.0.0.json

and every reader checks it against the ``[tags]`` allow-list. ``[snapshots]
signed_manifests``: "auto" (sign when a key can sign, accept unsigned with a warning),
"required" (an unsigned manifest, or one no allowed key signed, fails verify and restore),
"off".
"""

from __future__ import annotations

import enum
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from taydash_hooks import git, process
from taydash_hooks.config import Config
from taydash_hooks.errors import TaydashError, environment, refused, usage
from taydash_hooks.output import warn
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.fields import timestamp
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.store import Store
from taydash_hooks.store.base import KeyTaken
from taydash_hooks.tags.signatures import At, Refusal

if TYPE_CHECKING:
    from taydash_hooks.tags.policy import TagPolicy

NAMESPACE = "taydash-manifest"
MAX_SIGNATURE = 64 * 1024
_PGP = b"-----BEGIN PGP SIGNATURE-----"
_SSH = b"-----BEGIN SSH SIGNATURE-----"


def key(tag: str) -> str:
    return f"{manifest.key(tag)}.sig"


def mode(cfg: Config) -> str:
    """The ``signed_manifests`` in force. Not set, it is "required" where the tag policy
    already requires signed tags (every releaser has a signing key there, and "auto" would
    believe a store writer who deletes a .sig and forges a dump), else "auto"."""
    if cfg.snapshots and cfg.snapshots.signed_manifests:
        return cfg.snapshots.signed_manifests
    return "required" if cfg.tags and cfg.tags.require_signed else "auto"


def _by_default(cfg: Config) -> bool:
    return not (cfg.snapshots and cfg.snapshots.signed_manifests)


class State(enum.Enum):
    """What a reader found about a manifest's signature."""

    ALLOWED = "signed by an allowed key"
    RETIRED = "signed by a retired key before it was retired"
    UNSIGNED = "unsigned"
    REJECTED = "signature rejected"
    UNCHECKABLE = "signed, but there is no [tags] allow-list to check it against"
    OFF = "not checked (signed_manifests = off)"


@dataclass(frozen=True)
class Signature:
    """The verdict on one manifest's signature, with the signer and the reason."""

    state: State
    signer: str = ""
    reason: str = ""
    refusal: Refusal | None = None  # why, when REJECTED
    retired: str = ""  # the day its retired key stopped signing, when RETIRED

    @property
    def allowed(self) -> bool:
        """Made by a key the configuration trusts for it (allowed now, or retired since)."""
        return self.state in (State.ALLOWED, State.RETIRED)

    def text(self) -> str:
        if self.state is State.ALLOWED:
            return f"signed by {self.signer} (allowed)"
        if self.state is State.RETIRED:
            return f"signed by retired key {self.signer} (until {self.retired})"
        if self.state is State.REJECTED:
            return f"signature rejected: {self.reason}"
        return str(self.state.value)


# --- signing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """``user.signingkey`` in ``gpg.format``, signing without a terminal."""

    fmt: str  # "openpgp" | "ssh"
    key: str
    root: Path

    def sign(self, data: bytes) -> bytes:
        """A detached signature of ``data``; exit 3 with one sentence when the key cannot sign
        without asking (a passphrase and no agent), never a prompt."""
        if self.fmt == "ssh":
            return self._ssh(data)
        from taydash_hooks import gnupg
        from taydash_hooks.tags.signatures import signature_timeout

        try:
            res = gnupg.run("--pinentry-mode", "error", "--status-fd", "2", "--armor",
                            "--detach-sign", "--local-user", self.key, input=data,
                            timeout=signature_timeout())
        except process.Timeout:
            raise environment(f"signing the manifest with {self.key} timed out.") from None
        if res.returncode != 0 or "[GNUPG:] SIG_CREATED" not in res.err or not res.stdout:
            raise environment(self._cannot("gpg", res.err))
        return res.stdout

    def sign_each(self, *docs: bytes) -> list[bytes]:
        """A detached signature of each of ``docs`` (a manifest and its checksum list), made
        side by side: each is a process of its own, and two cost the time of one."""
        import threading

        made: list[bytes | BaseException] = [b""] * len(docs)

        def one(i: int) -> None:
            try:
                made[i] = self.sign(docs[i])
            except BaseException as exc:  # said by the caller's thread
                made[i] = exc

        others = [threading.Thread(target=one, args=(i,), daemon=True)
                  for i in range(1, len(docs))]
        for thread in others:
            thread.start()
        one(0)
        for thread in others:
            thread.join()
        for result in made:
            if isinstance(result, BaseException):
                raise result
        return [r for r in made if isinstance(r, bytes)]

    def _ssh(self, data: bytes) -> bytes:
        from taydash_hooks.tags.signatures import signature_timeout, ssh_keygen

        with tempfile.TemporaryDirectory(prefix="taydash-sign-") as tmp:
            keyfile = self.key
            if keyfile.startswith("key::"):  # a literal public key: the agent holds its secret
                keyfile = str(Path(tmp) / "key.pub")
                Path(keyfile).write_text(self.key[len("key::"):] + "\n")
            else:
                keyfile = os.path.expanduser(keyfile)
            env = {**os.environ, "SSH_ASKPASS_REQUIRE": "never"}
            try:
                res = process.run([ssh_keygen(), "-Y", "sign", "-f", keyfile, "-n", NAMESPACE],
                                  input=data, timeout=signature_timeout(), env=env)
            except process.Timeout:
                raise environment(f"signing the manifest with {self.key} timed out.") from None
        if res.returncode != 0 or _SSH not in res.stdout:
            raise environment(self._cannot("ssh-keygen", res.err))
        return res.stdout

    def _cannot(self, tool: str, err: str) -> str:
        last = err.strip().splitlines()[-1] if err.strip() else "no signature"
        return (f"user.signingkey {self.key} cannot sign without a terminal ({tool}: "
                f"{last[:200]}); unlock it in an agent (gpg-agent / ssh-agent) or use a key "
                "without a passphrase for snapshots.")


def signer(repo: git.Repo, cfg: Config) -> Signer | None:
    """Who signs this repository's manifests, checked now (before anything is stored): None
    when nothing signs ("off", or "auto" without a usable key, which is said once)."""
    how = mode(cfg)
    if how == "off":
        return None

    # Both settings from one git (the last value of each wins, as for `git config --get`).
    listed = git.git("config", "-z", "--get-regexp", r"^(user\.signingkey|gpg\.format)$",
                     cwd=repo.root, check=False).out
    settings = dict(entry.partition("\n")[::2] for entry in listed.split("\0") if entry)
    found = settings.get("user.signingkey", "").strip()
    fmt = settings.get("gpg.format", "").strip() or "openpgp"
    if not found:
        if how == "required" and _by_default(cfg):
            raise usage("manifests must be signed where release tags are ([tags] require_signed; "
                        "[snapshots] signed_manifests is \"required\" by default there), but "
                        "user.signingkey is not set: git config user.signingkey KEY (the key "
                        "that signs your tags), or set signed_manifests = \"auto\".")
        if how == "required":
            raise usage("[snapshots] signed_manifests = \"required\", but user.signingkey is not "
                        "set: git config user.signingkey KEY (the key that signs your tags).")
        warn("manifest not signed: user.signingkey is not set ([snapshots] signed_manifests "
             "= \"auto\"); readers will see it as unsigned.")
        return None
    if fmt not in ("openpgp", "ssh"):
        raise usage(f"gpg.format = {fmt!r} cannot sign manifests (openpgp or ssh).")
    result = Signer(fmt, found, repo.root)
    stopped = _rotated_out(cfg, result)
    if stopped:
        # A retired or revoked key no longer signs: a new manifest would carry its name.
        if how == "required":
            raise usage(f"user.signingkey {found} is {stopped}; it can no longer sign a "
                        "manifest: set user.signingkey to the current key. Nothing was stored.")
        warn(f"manifest not signed: user.signingkey {found} is {stopped}.")
        return None
    try:
        result.sign(b"taydash: can this key sign without a terminal?\n")
    except TaydashError as exc:
        if how == "required":
            raise TaydashError(f"{exc.message} Nothing was stored.", exc.code) from None
        warn(f"manifest not signed: {exc.message}")
        return None
    return result


def _rotated_out(cfg: Config, by: Signer) -> str:
    """"retired (since DAY)" or "revoked" when ``by`` is an OpenPGP key the [tags] lifecycle
    took out of service, else "" (asked of gpg only when such keys are configured)."""
    t = cfg.tags
    if t is None or by.fmt != "openpgp" or not (t.retired_openpgp_fingerprints
                                                 or t.revoked_openpgp_fingerprints):
        return ""
    from taydash_hooks import gnupg
    from taydash_hooks.tags.signatures import signature_timeout

    try:
        found, _ = gnupg.list_keys(by.key, timeout=signature_timeout())
    except process.Timeout:
        return ""
    primary = found[0].fingerprint if found else ""
    if primary in t.revoked_openpgp_fingerprints:
        return "revoked"
    retired = next((k for k in t.retired_openpgp_fingerprints if k.fingerprint == primary), None)
    return f"retired (since {retired.until.isoformat()})" if retired else ""


def spare(final: str) -> str:
    """Where a new signature waits while the one at ``final`` is replaced (:func:`replace`)."""
    return f"{final}.next"


def replace(store: Store, final: str, signature: bytes) -> None:
    """Put ``signature`` in place of the signature at ``final`` (a manifest's, or its checksum
    list's), with no moment without a checkable one: the new one is written beside it first
    (``<final>.next``, which readers check while ``final`` is missing), then the old one is
    removed and the new one created under the final name (a conditional create: two resigns
    at once cannot both win), then the spare is removed. Safe to rerun after an interruption."""
    waiting = spare(final)
    if store.exists(waiting):
        store.delete(waiting)  # a leftover of an interrupted run (or planted): ours replaces it
    store.put_bytes(waiting, signature)
    if store.exists(final):
        store.delete(final)
    try:
        store.put_bytes(final, signature)
    except KeyTaken:
        raise refused(f"another run re-signed {final} at the same time; rerun to check which "
                      "signature is in place.") from None
    store.delete(waiting)


# --- checking ------------------------------------------------------------------------


def check(repo: git.Repo, cfg: Config, store: Store, doc: Manifest,
          policy: TagPolicy | None = None) -> Signature:
    """The verdict on ``doc``'s signature against the [tags] allow-list (see :class:`State`);
    ``policy``: one already entered (``At.SIGNED``), shared when many are judged."""
    return check_payload(repo, cfg, store, doc.raw, key(doc.tag), doc.created, policy)


def check_detached(repo: git.Repo, cfg: Config, store: Store, doc: Manifest, payload: bytes,
                   where: str) -> Signature:
    """The verdict on the signature stored at ``where`` over ``payload`` (the manifest, or
    its checksum list), judged as of ``doc``'s creation against the [tags] allow-list; while
    ``where`` is missing, the one :func:`replace` left waiting beside it (a re-signing cut
    short) is judged instead."""
    return check_payload(repo, cfg, store, payload, where, doc.created)


def check_payload(repo: git.Repo, cfg: Config, store: Store, payload: bytes, where: str,
                  signed_at: str, policy: TagPolicy | None = None) -> Signature:
    """:func:`check_detached` for any record of the store, judged as of ``signed_at`` (its
    own ISO time, which the signature covers)."""
    if mode(cfg) == "off":
        return Signature(State.OFF)
    if not store.exists(where):
        where = spare(where)
        if not store.exists(where):
            return Signature(State.UNSIGNED)
    with store.open(where) as fh:
        sig = fh.read(MAX_SIGNATURE + 1)
    if len(sig) > MAX_SIGNATURE:
        return Signature(State.REJECTED, reason=f"{where} is larger than {MAX_SIGNATURE} bytes",
                         refusal=Refusal.OTHER)
    if cfg.tags is None:
        return Signature(State.UNCHECKABLE)
    from taydash_hooks.tags.policy import TagPolicy as Policy

    kind = "ssh" if sig.lstrip().startswith(_SSH) else "openpgp" if \
        sig.lstrip().startswith(_PGP) else None
    if kind is None:
        return Signature(State.REJECTED, reason="not an OpenPGP or SSH signature",
                         refusal=Refusal.OTHER)
    if kind not in cfg.tags.formats:
        return Signature(State.REJECTED, reason=f"{kind} signatures are not in tags.formats",
                         refusal=Refusal.NOT_CONFIGURED)
    # A stored manifest is history: judged when it was signed (a key rotated out or expired
    # since leaves it valid); for SSH that is the manifest's own creation time.
    if policy is not None:
        verdict = policy.verify_detached(kind, payload, sig, NAMESPACE, timestamp(signed_at))
    else:
        with Policy(repo, cfg, At.SIGNED) as own:
            verdict = own.verify_detached(kind, payload, sig, NAMESPACE, timestamp(signed_at))
    if not verdict.ok:
        return Signature(State.REJECTED, verdict.signer, verdict.reason, verdict.refusal)
    if verdict.retired:
        return Signature(State.RETIRED, verdict.signer, verdict.reason, retired=verdict.retired)
    return Signature(State.ALLOWED, verdict.signer, verdict.reason)


def _consequence(sig: Signature) -> str:
    if sig.refusal is Refusal.NOT_CONFIGURED:
        return ("its key is not in this configuration. Nothing says the backup was altered: if "
                "the key was rotated out, list it under [tags] retired_openpgp_fingerprints "
                "(or keep it in allowed_signers with valid-before) with the day it stopped "
                "signing; see SECURITY.md, \"Rotating the signing key\".")
    if sig.refusal is Refusal.REVOKED:
        return "its key is revoked (compromised): nothing it signed is believed."
    if sig.refusal in (Refusal.RETIRED, Refusal.EXPIRED):
        return "it was signed after its key stopped being valid, so it is not believed."
    return ("it was changed after it was signed, or signed by a key the [tags] policy does "
            "not allow.")


def believed(cfg: Config, sig: Signature) -> bool:
    """Whether a reader may believe a manifest with ``sig``: a signature that is there holds,
    and under "required" an allowed key made it (the rule every reader applies)."""
    return sig.state is not State.REJECTED and (mode(cfg) != "required" or sig.allowed)


def require(repo: git.Repo, cfg: Config, store: Store, doc: Manifest) -> Signature:
    """Check ``doc``'s signature and say it; refused (exit 1) unless :func:`believed`. An
    unsigned manifest under "auto" passes with a warning."""
    sig = check(repo, cfg, store, doc)
    if sig.state is State.REJECTED:
        # A signature that is there must hold: whatever the setting, a manifest changed after
        # it was signed (or signed by a key the policy refuses) is not believed. The sentence
        # says which, so a key rotation is never mistaken for tampering.
        raise refused(f"the manifest of {doc.tag}: {sig.text()}; {_consequence(sig)}")
    if not believed(cfg, sig):
        raise refused(f"the manifest of {doc.tag} is {sig.text()}; signed_manifests = "
                      "\"required\".")
    if sig.state in (State.UNSIGNED, State.UNCHECKABLE):
        warn(f"the manifest of {doc.tag} is {sig.text()}: its artifacts are only as trustworthy "
             "as whoever can write the store.")
    return sig
