"""Blocks of the project's documents, read the way a reader finds them: by their marker."""

from __future__ import annotations

import re
from pathlib import Path

from testing.gitrepo import ROOT


def block(name: str, lang: str = "bash", path: Path = ROOT / "README.md") -> str:
    """The fenced ``lang`` block right after ``<!-- name -->`` in ``path``."""
    m = re.search(rf"<!-- {re.escape(name)} -->\n```{lang}\n(.*?)```", path.read_text(), re.S)
    assert m, f"{path.name} lost its {name} block"
    return m.group(1)


def inline(containing: str, path: Path = ROOT / "README.md") -> str:
    """The one inline `code` span of ``path`` that contains ``containing`` (line breaks in the
    span read as spaces, as a reader copies it)."""
    prose = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)  # blocks apart
    spans = [s for s in re.findall(r"`([^`]+)`", prose) if containing in s]
    assert len(spans) == 1, f"{path.name}: {len(spans)} spans contain {containing!r}"
    return " ".join(spans[0].split())
