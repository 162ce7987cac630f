"""The validation gate: pushed commits -> verdicts (isolated worktrees, the tree cache,
protected branches)."""

from __future__ import annotations
