"""The one output module: what goes to stderr and stdout, with one prefix rule.

The rule: a *sentence* about what happened (progress, a warning, an error)
goes to stderr as ``taydash: <sentence>`` through :func:`say`, :func:`warn`
or :func:`error`. A *structured line* (one ref of a push report, a step of
the workflow, a table row) carries no prefix: :func:`line` on stderr,
:func:`out` on stdout for what a command was asked to print. Status words
come from :class:`Word` only, so they read the same in every command.

Verbosity: ``-q`` keeps errors only, the default shows sentences and lines,
``-v``/``-vv`` add info/debug records from :mod:`logging`.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import sys
from typing import Any, TextIO

from taydash_hooks.redact import redact

PREFIX = "taydash: "

log = logging.getLogger("taydash_hooks")


class Word(str, enum.Enum):
    """The status words every command and hook uses."""

    OK = "ok"
    VALIDATED = "validated"
    CACHED = "cached"
    ACCEPTED = "accepted"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    WARNING = "WARNING"
    REFUSED = "REFUSED"  # policy said no
    FAILED = "FAILED"  # a command or tool did not succeed

    def __str__(self) -> str:
        return self.value


# Table cells (verify, drill, doctor, backups verify).
PASS, FAIL, NOT_APPLICABLE = "pass", "FAIL", "n/a"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text read from the store (a key, a tag, a manifest field) as it may be printed: every
    control character escaped (``\\x1b``), so a forged value cannot move the cursor, erase
    a line or start a line of its own on the reader's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# Sentences may hold store text too (a key in a refusal): no character that drives a terminal
# (line breaks and tabs of our own sentences stay).
_DRIVING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _plain(message: str) -> str:
    return _DRIVING.sub(lambda m: f"\\x{ord(m.group()):02x}", redact(message))


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 commit``, ``2 commits`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def listing(items: list[str], limit: int = 10) -> str:
    """``a, b, c`` or ``a, b, …and 3 more``: every item up to ``limit``, then a count."""
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", …and {len(items) - limit} more"


class _Redacting(logging.Formatter):
    """Log records pass the same secret filter as sentences (-v shows argv and replies)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(verbosity: int) -> None:
    """-q → errors only, default → warnings and sentences, -v → info, -vv → debug."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Redacting(PREFIX + "%(message)s"))
    root = logging.getLogger("taydash_hooks")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def verbosity_from_env() -> int:
    """Hooks get no flags from git: TAYDASH_VERBOSE=1/2 or TAYDASH_QUIET=1 instead."""
    if os.environ.get("TAYDASH_QUIET"):
        return -1
    try:
        return int(os.environ.get("TAYDASH_VERBOSE", "0") or 0)
    except ValueError:
        return 0


def color(text: str, code: str, stream: TextIO | None = None) -> str:
    """Wrap ``text`` in an ANSI colour when ``stream`` is a TTY and NO_COLOR is unset."""
    stream = stream or sys.stderr
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    codes = {"red": "31", "green": "32", "yellow": "33", "bold": "1"}
    return f"\033[{codes[code]}m{text}\033[0m"


def mark(ok: bool | None, stream: TextIO | None = None) -> str:
    """The coloured table cell for a check: pass, FAIL or n/a."""
    if ok is None:
        return NOT_APPLICABLE
    return color(PASS, "green", stream) if ok else color(FAIL, "red", stream)


def _shown(level: int) -> bool:
    return log.isEnabledFor(level)


def say(message: str) -> None:
    """A sentence of progress on stderr (``taydash: ...``), shown unless -q."""
    if _shown(logging.WARNING):
        print(PREFIX + _plain(message), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning sentence on stderr, shown unless -q."""
    say(f"{Word.WARNING}: {message}")


def error(message: str) -> None:
    """An error sentence on stderr; shown even with -q."""
    print(PREFIX + _plain(message), file=sys.stderr, flush=True)


def line(text: str) -> None:
    """A structured line (report row, workflow step) on stderr, no prefix; hidden by -q."""
    if _shown(logging.WARNING):
        print(text, file=sys.stderr, flush=True)


def out(text: str = "") -> None:
    """What the command was asked for (a table, a manifest) on stdout."""
    print(text, flush=False)


def emit_json(doc: Any) -> None:
    """The one JSON document a --json command prints on stdout."""
    json.dump(doc, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """Wraps a stream that is read to its end; reports bytes, rate and time on stderr.

    On a terminal one line is updated in place (after the first second); otherwise a plain
    line every ``TAYDASH_PROGRESS_INTERVAL`` seconds (default 30). Nothing under -q. Used for
    dumps and downloads, never on a hook's fast path.
    """

    def __init__(self, raw: Any, label: str) -> None:
        import time

        self.raw, self.label = raw, label
        self.done = 0
        self._clock = time.monotonic
        self.start = self._clock()
        self.tty = sys.stderr.isatty()
        try:
            every = float(os.environ.get("TAYDASH_PROGRESS_INTERVAL", ""))
        except ValueError:
            every = -1.0
        self.every = every if every >= 0 else (0.5 if self.tty else 30.0)
        self.first = 0.0 if every >= 0 else (1.0 if self.tty else 30.0)
        self.shown = False
        self.last = self.start
        self.enabled = _shown(logging.WARNING)

    def _text(self) -> str:
        elapsed = max(self._clock() - self.start, 1e-6)
        return (f"{self.label}: {_size(self.done)}, {_size(self.done / elapsed)}/s, "
                f"{elapsed:.0f} s")

    def _finish(self) -> None:
        if self.shown and self.tty:
            sys.stderr.write(f"\r\033[K{PREFIX}  {self._text()}\n")  # the last state stays
            sys.stderr.flush()
        self.shown = False

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self.raw.read(n)
        except BaseException:
            self._finish()  # an error message must not land on the progress line
            raise
        self.done += len(data)
        if self.enabled:
            now = self._clock()
            if now - self.start >= self.first and now - self.last >= self.every:
                self.last = now
                self.shown = True
                if self.tty:
                    sys.stderr.write(f"\r\033[K{PREFIX}  {self._text()}")
                    sys.stderr.flush()
                else:
                    print(f"{PREFIX}  {self._text()}", file=sys.stderr, flush=True)
            if not data:
                self._finish()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
