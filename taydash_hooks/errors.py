"""The one error type of the project and its exit codes (docs/COMMANDS.md, "Limits, and what a refusal
looks like": 0 ok, 1 refused, 2 usage or configuration, 3 environment, 130 interrupted)."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    """Process exit codes, the same for the CLI, the hooks and the background job."""

    OK = 0
    REFUSED = 1  # refused by policy: validation failed, signature rejected, restore refused
    USAGE = 2  # usage or configuration error
    ENVIRONMENT = 3  # a tool missing, store unreachable, credentials missing
    INTERRUPTED = 130


class TaydashError(Exception):
    """A failure the user can act on: one sentence and an exit code.

    Raised where the failure is understood; the CLI and the hook entry print
    the message (never a traceback) and exit with ``code``.
    """

    def __init__(self, message: str, code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


def refused(message: str) -> TaydashError:
    """A policy refusal (exit 1)."""
    return TaydashError(message, Exit.REFUSED)


def usage(message: str) -> TaydashError:
    """A usage or configuration error (exit 2)."""
    return TaydashError(message, Exit.USAGE)


def environment(message: str) -> TaydashError:
    """A missing tool, unreachable store or missing credentials (exit 3)."""
    return TaydashError(message, Exit.ENVIRONMENT)
