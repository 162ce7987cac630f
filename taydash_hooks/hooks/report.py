"""The per-ref report of a push: one :class:`RefResult` per ref update, rendered here only."""

from __future__ import annotations

from dataclasses import dataclass, field

from taydash_hooks.hooks.updates import RefUpdate
from taydash_hooks.output import Word, line, say
from taydash_hooks.results import Finding, Verdict


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


def render(results: list[RefResult], blocked: str | None = None) -> None:
    """One line per ref on stderr, then ``blocked`` as a sentence when any ref is refused."""
    for r in results:
        line(r.line())
    if blocked and overall(results) is Verdict.REFUSED:
        say(blocked)
