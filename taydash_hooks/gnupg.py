"""The one GnuPG client: every gpg and gpgv argv taydash runs is built here (as
``pg_client`` is for PostgreSQL), and ``--with-colons`` output is read by one parser.

Every call honours ``TAYDASH_GPG`` / ``TAYDASH_GPGV`` (like git's ``gpg.program``: a packager
points at gpg2, a test at a hung one) and uses the local keyring only: an unknown recipient or
signer is never looked up over the network (WKD, keyservers); it fails at once with the fix.
``tests/test_layout.py`` holds the rule that no gpg argv is written anywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from taydash_hooks import process

LOCAL_ONLY = ("--auto-key-locate", "clear,local", "--no-auto-key-retrieve")


def program() -> str:
    return os.environ.get("TAYDASH_GPG", "gpg")


def gpgv_program() -> str:
    return os.environ.get("TAYDASH_GPGV", "gpgv")


def argv(*args: str, homedir: Path | None = None) -> list[str]:
    """gpg with ``args``: batch, no terminal, the local keyring only (``homedir``: another)."""
    home = ["--homedir", str(homedir)] if homedir is not None else []
    return [program(), *home, "--batch", "--no-tty", *LOCAL_ONLY, *args]


def gpgv_argv(*args: str) -> list[str]:
    return [gpgv_program(), *args]


def run(*args: str, timeout: float, input: bytes | None = None,
        homedir: Path | None = None) -> process.Result:
    """:func:`argv` run to completion (exit status and output left to the caller)."""
    return process.run(argv(*args, homedir=homedir), input=input, timeout=timeout)


@dataclass(frozen=True)
class SubKey:
    fingerprint: str
    validity: str  # field 2: "r" revoked, "e" expired, ...
    expires: float | None
    capabilities: str  # field 12: upper case for the whole key's usable capabilities


@dataclass(frozen=True)
class Key:
    """One key block of ``--with-colons`` output: the primary and its subkeys."""

    fingerprint: str
    validity: str
    expires: float | None
    capabilities: str
    secret: bool
    subkeys: list[SubKey] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.validity not in ("r", "e")

    def expiry_of(self, fingerprint: str) -> float | None:
        """When the primary or subkey ``fingerprint`` expires (None: never, or not this key's)."""
        wanted = fingerprint.upper()
        if self.fingerprint == wanted:
            return self.expires
        return next((s.expires for s in self.subkeys if s.fingerprint == wanted), None)


def parse_colons(text: str) -> list[Key]:
    """The keys of ``gpg --with-colons`` output (``--fixed-list-mode``), in order."""
    keys: list[Key] = []
    pending: list[str] | None = None  # the pub/sec/sub/ssb record awaiting its fpr
    for line in text.splitlines():
        rec = line.split(":")
        if rec[0] in ("pub", "sec", "sub", "ssb"):
            pending = rec
        elif rec[0] == "fpr" and pending is not None and len(rec) > 9:
            validity = pending[1] if len(pending) > 1 else ""
            expires = float(pending[6]) if len(pending) > 6 and pending[6].isdigit() else None
            caps = pending[11] if len(pending) > 11 else ""
            fpr = rec[9].upper()
            if pending[0] in ("pub", "sec"):
                keys.append(Key(fpr, validity, expires, caps, pending[0] == "sec"))
            elif keys:
                keys[-1].subkeys.append(SubKey(fpr, validity, expires, caps))
            pending = None
    return keys


def list_keys(*names: str, timeout: float, secret: bool = False, homedir: Path | None = None,
              keyring: Path | None = None) -> tuple[list[Key], process.Result]:
    """The keys ``names`` match (all without names), public or ``secret``; from ``keyring``
    alone when given. The result too: an exit status of 2 is "no such key"."""
    only = ["--no-default-keyring", "--keyring", str(keyring)] if keyring is not None else []
    what = "--list-secret-keys" if secret else "--list-keys"
    res = run(*only, "--with-colons", "--fixed-list-mode", what, *(["--", *names] if names else []),
              timeout=timeout, homedir=homedir)
    return parse_colons(res.out), res
