"""Signature verdicts on stored history, remembered under ``.git/taydash/verdicts``.

A manifest's signature is judged as of when it was made (``At.SIGNED``): the verdict depends
only on the signed bytes, the signature, its namespace and time, and the policy that judges
it (the ``[tags]`` table, the keys file, the allowed-signers and revocation files). All of
those go into the key, so a changed manifest, signature, key file or setting is judged anew,
and an unchanged one is not: `backups list` of a thousand backups runs no gpgv for the ones
it saw before. A refusal that may pass next time (a timeout, a malformed signature) is never
remembered. The folder is this clone's own (0700, files 0600); nothing in it is trusted
beyond what this clone wrote there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from taydash_hooks.errors import TaydashError
from taydash_hooks.statefiles import read_private, write_private
from taydash_hooks.tags.signatures import Refusal, SigCheck

FORMAT = 1  # bump when what a verdict means changes: every remembered one is judged anew
_KEPT = {None, Refusal.ALTERED, Refusal.NOT_CONFIGURED, Refusal.REVOKED, Refusal.RETIRED,
         Refusal.EXPIRED}


def file_digest(path: Path | None) -> str:
    """SHA-256 of a policy file's bytes ("" when there is none)."""
    if path is None:
        return ""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


class Verdicts:
    """Remembered verdicts of one policy (``identity``: everything it judges by)."""

    def __init__(self, folder: Path, identity: str) -> None:
        self.folder, self.identity = folder, identity

    def key(self, kind: str, payload: bytes, signature: bytes, namespace: str,
            signed_at: float | None) -> str:
        sha = hashlib.sha256()
        for part in (str(FORMAT).encode(), self.identity.encode(), kind.encode(),
                     namespace.encode(), repr(signed_at).encode(),
                     hashlib.sha256(payload).digest(), hashlib.sha256(signature).digest()):
            sha.update(len(part).to_bytes(8, "big") + part)
        return sha.hexdigest()

    def get(self, key: str) -> SigCheck | None:
        try:
            doc = json.loads(read_private(self.folder / key, 64 * 1024))
            refusal = Refusal(doc["refusal"]) if doc["refusal"] else None
            return SigCheck(bool(doc["ok"]), str(doc["signer"]), str(doc["reason"]), refusal,
                            str(doc["retired"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, verdict: SigCheck) -> None:
        if verdict.refusal not in _KEPT:
            return
        doc = {"ok": verdict.ok, "signer": verdict.signer, "reason": verdict.reason,
               "refusal": verdict.refusal.value if verdict.refusal else None,
               "retired": verdict.retired}
        # Remembering is an optimisation: a verdict that cannot be kept is judged again.
        with contextlib.suppress(OSError, TaydashError):
            write_private(self.folder / key, json.dumps(doc).encode())
