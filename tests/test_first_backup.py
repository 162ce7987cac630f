"""A newcomer's first backup: the README's quick start, run as printed by bench/first_backup."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from testing.gitrepo import ROOT
from testing.skip import require


@pytest.mark.slow  # starts its own services (or builds a venv)
def test_the_readme_quick_start_makes_a_first_backup_of_a_compose_stack() -> None:
    if os.geteuid() != 0:
        require("a-root-user", "run the tests as root (dockerd needs it)")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "first_backup")], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # Every step of the block ran, the backup holds both kinds and verifies, and a time is said.
    assert [m.group(1) for m in re.finditer(r"step (\d) \(", out)] == ["1", "2", "3"], out
    assert "the first backup: postgres, victoriametrics; verify exit 0" in out, out
    assert re.search(r"^time to first backup: \d+\.\d s", out, re.M), out
    # `taydash backups list` (the block's last line) listed the tag.
    assert re.search(r"^v0\.1\.0\b", out, re.M), out
