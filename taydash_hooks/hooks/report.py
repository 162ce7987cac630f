"""The per-ref report of a hook run: the one place a :class:`RefResult` becomes text."""

from __future__ import annotations

from taydash_hooks.output import line, say
from taydash_hooks.results import RefResult, Verdict, overall


def render(results: list[RefResult], blocked: str | None = None) -> None:
    """One line per ref on stderr, then ``blocked`` as a sentence when any ref is refused."""
    for r in results:
        line(r.line())
    if blocked and overall(results) is Verdict.REFUSED:
        say(blocked)
