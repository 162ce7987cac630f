"""The release tag naming convention (``vMAJOR.MINOR.PATCH`` with one of the suffixes of
:data:`CONVENTION_TEXT`, e.g. ``-milestone-mqtt`` or ``-adr-001``), or a configured regex.

Tag names come from whoever pushes, so judging one is bounded: a release tag
name is at most :data:`MAX_TAG_LENGTH` characters, and a custom pattern runs
on RE2, whose time is linear in the name (no pattern can make it backtrack).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from taydash_hooks.patterns import compile_custom

# git allows far longer names; a release tag also becomes part of store keys and
# file names (`db-backups/<tag>_<TS>-<RUN>_<database>.dump.sha256`), which must fit in 255.
MAX_TAG_LENGTH = 128

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


@functools.lru_cache(maxsize=8)
def _custom(pattern: str) -> Any:
    return compile_custom(pattern)


def naming_problem(name: str, naming: str) -> str | None:
    """Why ``name`` breaks ``naming`` (quoting the rule and a correct example), or None."""
    if len(name) > MAX_TAG_LENGTH:
        return (f"tag name {name[:40]!r}... is {len(name)} characters long; release tag names "
                f"have at most {MAX_TAG_LENGTH}")
    if naming == "convention":
        if CONVENTION.fullmatch(name):
            return None
        return (f"tag name {name!r} does not follow the naming convention "
                f"({CONVENTION_TEXT}; e.g. v0.1.0 or {EXAMPLE})")
    pattern = naming[len("regex:"):]
    if _custom(pattern).fullmatch(name):
        return None
    return f"tag name {name!r} does not match tags.naming regex {pattern!r}"


_SEMVER = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-(.*))?")


def version_key(name: str) -> tuple[int, tuple[int, ...], int, str]:
    """Sort key: versions numerically (v0.10.0 after v0.2.0), a release before its suffixed
    tags of the same version, anything that is no version last, by name."""
    m = _SEMVER.fullmatch(name)
    if m is None:
        return (1, (), 0, name)
    return (0, (int(m.group(1)), int(m.group(2)), int(m.group(3))), 0 if m.group(4) is None else 1,
            name)


_LOOSE = re.compile(r"\s*[vV]?\s*([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(.*)")
_SUFFIXES = ("checkpoint", "milestone", "adr", "release-candidate", "rc", "before", "known-good",
             "emergency-backup", "with-data")


def explain(name: str) -> tuple[str, str | None]:
    """Which rule of the convention ``name`` breaks, and the nearest name that passes (None
    when there is nothing near): ``v1.2`` -> ``v1.2.0``, ``v0.1.0-adr-1`` -> ``v0.1.0-adr-001``."""
    if CONVENTION.fullmatch(name):
        return "it follows the naming convention", None
    m = _LOOSE.fullmatch(name)
    if m is None:
        return (f"it does not start with a version: the convention is {CONVENTION_TEXT}",
                None)
    major, minor, patch, rest = m.group(1), m.group(2), m.group(3), m.group(4)
    problems = []
    if not name.startswith("v"):
        problems.append("it must start with a lowercase v")
    if minor is None or patch is None:
        problems.append("the version needs three numbers, MAJOR.MINOR.PATCH")
    parts = [major, minor or "0", patch or "0"]
    if any(len(p) > 1 and p.startswith("0") for p in parts):
        problems.append("version numbers have no leading zeros")
    base = "v" + ".".join(str(int(p)) for p in parts)
    suffix = rest.strip().lower().replace("_", "-").replace(" ", "-")
    if suffix != rest.strip():
        problems.append("the suffix is lowercase letters, digits and hyphens")
    fixed = ""
    if suffix:
        body = suffix.lstrip("-")
        kind = next((k for k in sorted(_SUFFIXES, key=len, reverse=True)
                     if body == k or body.startswith(k + "-") or
                     (k == "rc" and re.fullmatch(r"rc[0-9]+", body))), None)
        if kind == "adr":
            digits = re.sub(r"[^0-9]", "", body[len("adr"):])
            if len(digits) < 3:
                problems.append("an ADR number has three or more digits (-adr-001)")
            fixed = f"-adr-{int(digits or 0):03d}" if digits else ""
        elif kind is not None:
            word = re.sub(r"[^a-z0-9-]+", "-", body).strip("-")
            fixed = f"-{word}"
        else:
            problems.append("the suffix must be one of -checkpoint-<word>, -milestone-<word>, "
                            "-adr-<NNN>, -release-candidate, -rc<N>, -before-<word>, "
                            "-known-good, -emergency-backup, -with-data")
            word = re.sub(r"[^a-z0-9-]+", "-", body).strip("-")
            fixed = f"-milestone-{word}" if word else ""
    nearest = base + fixed
    if not CONVENTION.fullmatch(nearest):
        nearest = base
    return "; ".join(problems) or "it does not follow the naming convention", nearest
