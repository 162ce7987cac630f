"""Skipping for a missing binary, or failing when CI forbids skips."""

from __future__ import annotations

import os
import shutil

import pytest


def require(binary: str, install: str) -> str:
    """Path of ``binary``; skip (or fail under TAYDASH_TEST_DISALLOW_SKIP=1) when missing."""
    path = shutil.which(binary)
    if path:
        return path
    reason = f"{binary} not found; install it with: {install}"
    if os.environ.get("TAYDASH_TEST_DISALLOW_SKIP") == "1":
        pytest.fail(f"{reason} (skips are disallowed by TAYDASH_TEST_DISALLOW_SKIP=1)")
    pytest.skip(reason)
