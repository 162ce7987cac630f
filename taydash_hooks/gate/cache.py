"""Which trees already passed which validation commands.

One JSON file under the git common dir, so every worktree shares it. A
corrupt file is treated as empty (the worst case is validating again).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from taydash_hooks.gate.fast_path import profile, tree_key

__all__ = ["ValidateCache", "key", "profile"]
from taydash_hooks.statefiles import read_private, write_private

VERSION = 4  # 4: tree keys are "<profile>:<tree>" (3 hashed them)


def key(prof: str, tree: str) -> str:
    """The cache key: the verdict profile and the tree id (one definition, the fast path's)."""
    return tree_key(prof, tree)


class ValidateCache:
    """Load once, ask :meth:`passed`, :meth:`record` successes, :meth:`save` at the end.

    Besides tree keys it remembers which commit passed which command list, so
    the hook's fast path (:mod:`taydash_hooks.gate.fast_path`) can answer a re-push
    without starting git or hashing anything.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, float] = {}
        self.commits: dict[str, str] = {}  # commit -> profile it passed under
        self._dirty = False
        try:
            doc = json.loads(read_private(path))
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError("another version")  # older keys meant less: start over
            entries = doc.get("passed", {})
            self.entries = {
                k: float(v) for k, v in entries.items() if isinstance(v, (int, float))
            }
            commits = doc.get("commits", {})
            self.commits = {k: v for k, v in commits.items() if isinstance(v, str)}
        except (OSError, ValueError, AttributeError):
            self.entries, self.commits = {}, {}

    def passed(self, k: str) -> bool:
        return k in self.entries

    def record(self, k: str, prof: str, commit: str) -> None:
        """``commit`` (with tree key ``k``) passed under verdict profile ``prof``."""
        self.entries[k] = time.time()
        self.commits[commit] = prof
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        write_private(self.path, json.dumps({"version": VERSION, "passed": self.entries,
                                             "commits": self.commits}).encode())
