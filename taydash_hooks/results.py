"""Typed results of checks: a status word, a reason, a duration.

Every check (protected branches, the tag policy, validation, snapshots) says
what it found as a :class:`Finding`; whether it blocks is decided on its
:class:`~taydash_hooks.output.Word`, never on its text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from taydash_hooks.output import Word

BLOCKING = frozenset({Word.REFUSED, Word.FAILED})


class Verdict(enum.IntEnum):
    """The outcome of a ref or of a whole run, ordered by severity."""

    OK = 0
    WARNING = 1
    REFUSED = 2


@dataclass(frozen=True)
class Finding:
    """What one check found: ``validated (1.2 s)``, ``FAILED: ./x exit 1``, ..."""

    word: Word
    reason: str = ""
    seconds: float | None = None

    @property
    def verdict(self) -> Verdict:
        if self.word in BLOCKING:
            return Verdict.REFUSED
        return Verdict.WARNING if self.word is Word.WARNING else Verdict.OK

    @property
    def ok(self) -> bool:
        return self.verdict is not Verdict.REFUSED

    def text(self) -> str:
        """The one rendering of a finding: ``word``, ``word (n s)`` or ``word: reason``."""
        timing = f" ({self.seconds:.1f} s)" if self.seconds is not None else ""
        return f"{self.word}{timing}: {self.reason}" if self.reason else f"{self.word}{timing}"
