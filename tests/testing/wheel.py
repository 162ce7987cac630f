"""The project as a user installs it: a wheel built from a clean copy of the checkout."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from testing.gitrepo import ROOT, run

# `make test` fills this once per pyproject.toml (`pip wheel`): the dependencies as wheels, so a
# test can install into an interpreter of its own without the package index.
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"


def build(into: Path) -> Path:
    """A wheel of the checkout's files as git sees them (tracked and new, not ignored), so no
    build/ or *.egg-info left by an earlier build can stand in for a file the package lacks."""
    src = into / "src"
    files = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    wheels = into / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, src, timeout=300)
    return next(wheels.glob("taydash_hooks-*.whl"))
