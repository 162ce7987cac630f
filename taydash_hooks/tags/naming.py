"""The release tag naming convention of SPEC.md (or a configured regex)."""

from __future__ import annotations

import re

_WORD = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_NUM = r"(?:0|[1-9][0-9]*)"
CONVENTION = re.compile(
    rf"v{_NUM}\.{_NUM}\.{_NUM}"
    rf"(?:-checkpoint-{_WORD}|-milestone-{_WORD}|-adr-[0-9]{{3,}}|-release-candidate"
    rf"|-rc[0-9]+|-before-{_WORD}|-known-good|-emergency-backup|-with-data)?"
)
CONVENTION_TEXT = (
    "vMAJOR.MINOR.PATCH, optionally followed by one of -checkpoint-<word>, "
    "-milestone-<word>, -adr-<NNN>, -release-candidate, -rc<N>, -before-<word>, "
    "-known-good, -emergency-backup, -with-data"
)
EXAMPLE = "v0.1.0-milestone-mqtt"


def naming_problem(name: str, naming: str) -> str | None:
    """Why ``name`` breaks ``naming`` (quoting the rule and a correct example), or None."""
    if naming == "convention":
        if CONVENTION.fullmatch(name):
            return None
        return (f"tag name {name!r} does not follow the naming convention "
                f"({CONVENTION_TEXT}; e.g. v0.1.0 or {EXAMPLE})")
    pattern = naming[len("regex:"):]
    if re.fullmatch(pattern, name):
        return None
    return f"tag name {name!r} does not match tags.naming regex {pattern!r}"
