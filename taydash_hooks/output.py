"""Diagnostics on stderr: logging set-up, colour that honours NO_COLOR and TTYs."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, TextIO

log = logging.getLogger("taydash_hooks")


def setup_logging(verbosity: int) -> None:
    """-q → errors only, default → warnings and notices, -v → info, -vv → debug."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("taydash: %(message)s"))
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


def say(message: str) -> None:
    """One line of progress on stderr, shown unless -q."""
    if log.isEnabledFor(logging.WARNING):
        print(message, file=sys.stderr, flush=True)


def emit_json(doc: Any) -> None:
    """The one JSON document a --json command prints on stdout."""
    json.dump(doc, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
