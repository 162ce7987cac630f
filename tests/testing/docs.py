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
