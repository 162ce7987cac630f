"""Blocks of the project's documents, read the way a reader finds them: by their marker.

A block may live in any of the documents (the README, RECOVERY.md, SECURITY.md, docs/*.md);
its marker names it in exactly one of them, so moving a section never loses its test.
"""

from __future__ import annotations

import re
from pathlib import Path

from testing.gitrepo import ROOT


def documents() -> list[Path]:
    """Every document a reader of the project is pointed to."""
    return [ROOT / "README.md", ROOT / "RECOVERY.md", ROOT / "SECURITY.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def _one(found: list[tuple[Path, str]], what: str) -> str:
    assert len(found) == 1, f"{what}: found in {[p.name for p, _ in found]} (expected one place)"
    return found[0][1]


def block(name: str, lang: str = "bash") -> str:
    """The fenced ``lang`` block right after ``<!-- name -->`` in the one document that has it."""
    pattern = re.compile(rf"<!-- {re.escape(name)} -->\n```{lang}\n(.*?)```", re.S)
    return _one([(p, m.group(1)) for p in documents() if (m := pattern.search(p.read_text()))],
                f"the {name} block")


def between(marker: str) -> str:
    """What lies between ``<!-- marker:start -->`` and ``<!-- marker:end -->``, its fences
    removed."""
    found = []
    for p in documents():
        text = p.read_text()
        if f"<!-- {marker}:start -->" in text:
            part = text.split(f"<!-- {marker}:start -->", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
            found.append((p, re.sub(r"^```\w*\n|```\s*$", "", part.strip(), flags=re.M)))
    return _one(found, f"the {marker} section")


def inline(containing: str) -> str:
    """The one inline `code` span of the documents that contains ``containing`` (line breaks in
    the span read as spaces, as a reader copies it)."""
    spans = []
    for p in documents():
        prose = re.sub(r"^```.*?^```", "", p.read_text(), flags=re.S | re.M)  # blocks apart
        spans += [(p, " ".join(s.split())) for s in re.findall(r"`([^`]+)`", prose)
                  if containing in " ".join(s.split())]
    return _one(spans, f"a code span with {containing!r}")
