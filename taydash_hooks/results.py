"""Typed results of checks: a status word, a reason, a duration; one result per ref.

Every check (protected branches, the tag policy, validation, snapshots) says
what it found as a :class:`Finding`; whether it blocks is decided on its
:class:`~taydash_hooks.output.Word`, never on its text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from taydash_hooks.output import FAIL, NOT_APPLICABLE, PASS, Word
from taydash_hooks.updates import RefUpdate

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


@dataclass
class RefResult:
    """Everything every check found about one pushed ref."""

    update: RefUpdate
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    @property
    def verdict(self) -> Verdict:
        return max((f.verdict for f in self.findings), default=Verdict.OK)

    @property
    def refused(self) -> bool:
        return self.verdict is Verdict.REFUSED

    def text(self) -> str:
        return "; ".join(f.text() for f in self.findings) or str(Word.OK)

    def line(self) -> str:
        u = self.update
        return f"{u.remote_ref} {u.local_oid[:7]}  {self.text()}"


def results_for(updates: list[RefUpdate]) -> list[RefResult]:
    """An empty result for each update, in stdin order."""
    return [RefResult(u) for u in updates]


def overall(results: list[RefResult]) -> Verdict:
    return max((r.verdict for r in results), default=Verdict.OK)


@dataclass(frozen=True)
class Check:
    """One named check of a report (verify, drill, doctor): passed, failed or not applicable,
    what was found, and the fix a user can paste when it failed."""

    name: str
    ok: bool | None  # None: not applicable (the feature is not configured)
    detail: str
    fix: str = ""
    warning: bool = False  # a failure that is advice: doctor says WARN and still exits 0

    def cell(self) -> str:
        return NOT_APPLICABLE if self.ok is None else PASS if self.ok else FAIL
