"""OpenPGP in the stream: encrypt a producer's output on its way to the store, decrypt on the
way back. gpg runs as a process between two pipes; nothing is decrypted to disk.

Decisions are taken on gpg's status protocol (``--status-fd``), the interface gpg keeps
stable for programs, never on its human messages.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from taydash_hooks import gnupg, process
from taydash_hooks.errors import Exit, TaydashError, environment, refused
from taydash_hooks.results import Check

CHUNK = 1024 * 1024


def encrypt_argv(recipients: tuple[str, ...]) -> list[str]:
    """gpg encrypting stdin to stdout for ``recipients`` (no compression: dumps already are)."""
    to = [arg for r in recipients for arg in ("--recipient", r)]
    return gnupg.argv("--trust-model", "always", "--compress-algo", "none", "--encrypt", *to,
                      "--output", "-")


@contextlib.contextmanager
def encrypting_writer(write: Callable[[IO[bytes]], None], recipients: tuple[str, ...],
                      timeout: float, what: str = "the source") -> Iterator[process.ProducerStream]:
    """gpg's encrypted output of whatever ``write`` writes into it (on a thread).

    The stream ends well only when ``write`` returned and gpg exited 0: a failure on either
    side is a failed stream, never a complete object.
    """
    failures: list[BaseException] = []
    with tempfile.NamedTemporaryFile(prefix="taydash-gpg-", suffix=".err") as err, \
            process.popen(encrypt_argv(recipients), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=err) as gpg:

        def feed() -> None:
            assert gpg.stdin is not None
            try:
                write(gpg.stdin)
            except BaseException as exc:
                failures.append(exc)
            finally:
                with contextlib.suppress(OSError):
                    gpg.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()

        def written() -> str | None:
            feeder.join()
            if not failures:
                return None
            if isinstance(failures[0], process.ProducerFailed):
                return str(failures[0])  # "pg_dump exited 1: ...", said as it is
            return f"{what} failed ({failures[0]})"

        stream = process.ProducerStream(gpg, "gpg --encrypt", timeout, err.name, at_eof=written)
        try:
            yield stream
        finally:
            stream.close()
            feeder.join(timeout=5)


def encrypting_stream(source: Any, recipients: tuple[str, ...],
                      timeout: float) -> contextlib.AbstractContextManager[process.ProducerStream]:
    """``source`` (a producer's stream, or the zstd compressor over it) encrypted by gpg."""

    def copy(out: IO[bytes]) -> None:
        while chunk := source.read(CHUNK):
            out.write(chunk)

    return encrypting_writer(copy, recipients, timeout, "the dump")


class NoSecretKey(TaydashError):
    """Decryption needs a secret key this keyring does not have (exit 3): the bytes may be
    fine, they cannot be read here."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.ENVIRONMENT)


@contextlib.contextmanager
def decrypting(path: Path, what: str, timeout: float) -> Iterator[IO[bytes]]:
    """The plaintext of the encrypted file ``path`` as a pipe (see :func:`decrypting_stream`)."""
    with path.open("rb") as src, _gpg_decrypt(src, None, what, timeout) as plain:
        yield plain


@contextlib.contextmanager
def decrypting_stream(source: Any, what: str, timeout: float) -> Iterator[IO[bytes]]:
    """The plaintext of ``source`` (any reader: a store object on its way in, hashed as it
    passes) as a pipe, decrypted with the user's key; a thread feeds gpg.

    Raises exit 3 when no secret key can decrypt it (checked also when the reader failed
    first: a restore that got no bytes fails for that reason, and says so), and exit 1 when
    it was not encrypted to anyone at all (the plaintext was read, and must be thrown away:
    the caller's failure path runs).
    """
    with _gpg_decrypt(subprocess.PIPE, source, what, timeout) as plain:
        yield plain


@contextlib.contextmanager
def _gpg_decrypt(stdin: Any, source: Any, what: str, timeout: float) -> Iterator[IO[bytes]]:
    with tempfile.TemporaryFile(prefix="taydash-gpg-") as status, \
            process.popen(gnupg.argv("--status-fd", "2", "--decrypt"),
                          stdin=stdin, stdout=subprocess.PIPE, stderr=status) as gpg:
        assert gpg.stdout is not None
        feeder = None
        if source is not None:
            feeder = threading.Thread(target=_feed, args=(source, gpg.stdin), daemon=True)
            feeder.start()
        failed = True
        try:
            yield gpg.stdout
            failed = False
        finally:
            # gpg blocks writing plaintext nobody reads, and waiting for it would then last
            # the whole timeout. After a failure the rest is not wanted: closing our end
            # ends gpg. Otherwise it is read to the end: gpg checks the message's integrity
            # (MDC) only there, before it says DECRYPTION_OKAY.
            with contextlib.suppress(OSError, ValueError):
                if failed:
                    gpg.stdout.close()
                else:
                    while gpg.stdout.read(CHUNK):
                        pass
            try:
                rc = gpg.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill_group(gpg)
                rc = -9
            if feeder is not None:
                feeder.join(timeout=30)
            status.seek(0)
            _judge(status.read(1 << 20).decode("utf-8", "replace").splitlines(), rc, failed, what)


def _feed(source: Any, sink: IO[bytes]) -> None:
    try:
        while chunk := source.read(CHUNK):
            sink.write(chunk)
    except (BrokenPipeError, ValueError):
        pass  # gpg stopped reading: its own status says why
    finally:
        with contextlib.suppress(OSError):
            sink.close()


def _judge(lines: list[str], rc: int, failed: bool, what: str) -> None:
    """gpg's status lines after a decryption: the verdict (see :func:`decrypting_stream`)."""
    words = {line.split()[1] for line in lines if line.startswith("[GNUPG:] ")
             and len(line.split()) > 1}
    if "NO_SECKEY" in words and "DECRYPTION_OKAY" not in words:
        keys = sorted({ln.split()[2] for ln in lines if ln.startswith("[GNUPG:] NO_SECKEY ")
                       and len(ln.split()) > 2})
        raise NoSecretKey(f"{what} is encrypted and no secret key in your gpg keyring "
                          f"can decrypt it (key {', '.join(keys) or '?'}: import the "
                          "recipient's secret key, or run this where it is).") from None
    if rc != 0 and not failed:
        last = [ln for ln in lines if not ln.startswith("[GNUPG:]")][-1:] or [f"exit {rc}"]
        raise environment(f"decrypting {what} failed: {last[0]}")
    if not failed and not {"ENC_TO", "DECRYPTION_OKAY"} <= words:
        # gpg --decrypt also prints a plain literal packet (gpg --store) and exits 0:
        # only a public-key encryption that decrypted is what we stored.
        raise refused(f"{what} is stored as encrypted but holds no public-key "
                      "encryption (a plain OpenPGP packet): someone other than taydash "
                      "wrote it; it is not believed.")


def recipient_check(who: str) -> Check:
    """Whether ``who`` has a public key in the keyring that can encrypt (doctor), with the fix."""
    try:
        found, _ = gnupg.list_keys(who, timeout=30)
    except (process.Timeout, TaydashError) as exc:
        return Check(f"recipient {who}", False, str(exc))
    # The capabilities field of the primary holds the whole key's usable ones; E: it can encrypt.
    can = [k for k in found if "E" in k.capabilities and k.usable]
    if not found:
        return Check(f"recipient {who}", False, "no public key in the keyring",
                     "gpg --import THEIR-PUBLIC-KEY.asc (or fix [snapshots] "
                     "encrypt_to / [snapshots.config] recipients)")
    if not can:
        return Check(f"recipient {who}", False,
                     "the key has no usable encryption subkey (gpg would fail with "
                     "'encryption failed: No name')",
                     f"gpg --quick-add-key {found[0].fingerprint} cv25519 encr (with the secret "
                     "key), or name a recipient whose key can encrypt")
    return Check(f"recipient {who}", True, "can encrypt")
