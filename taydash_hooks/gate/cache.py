"""Which trees already passed which validation commands.

One JSON file under the git common dir, so every worktree shares it. A
corrupt file is treated as empty (the worst case is validating again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path


def key(commands: tuple[str, ...], tree: str) -> str:
    """The cache key: hash of the command list and the tree id."""
    doc = json.dumps({"commands": list(commands), "tree": tree}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


class ValidateCache:
    """Load once, ask :meth:`passed`, :meth:`record` successes, :meth:`save` at the end.

    Besides tree keys it remembers which commit passed which command list, so
    the hook's fast path (:mod:`taydash_hooks.hooks.fast_path`) can answer a re-push
    without starting git or hashing anything.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, float] = {}
        self.commits: dict[str, list[str]] = {}
        self._dirty = False
        try:
            doc = json.loads(path.read_text())
            entries = doc.get("passed", {}) if isinstance(doc, dict) else {}
            self.entries = {
                k: float(v) for k, v in entries.items() if isinstance(v, (int, float))
            }
            commits = doc.get("commits", {})
            self.commits = {k: v for k, v in commits.items()
                            if isinstance(v, list) and all(isinstance(c, str) for c in v)}
        except (OSError, ValueError, AttributeError):
            self.entries, self.commits = {}, {}

    def passed(self, k: str) -> bool:
        return k in self.entries

    def record(self, k: str, commands: tuple[str, ...], commit: str) -> None:
        """``commit`` (with tree key ``k``) passed ``commands``."""
        self.entries[k] = time.time()
        self.commits[commit] = list(commands)
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"version": 2, "passed": self.entries,
                                       "commits": self.commits}))
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
