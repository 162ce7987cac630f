"""Verdicts shared by the hooks of one `git push`.

With the direct hooks and the pre-commit plugin both installed, git runs both for one push; a
failing check would run twice (a 3 s check took 6.9 s). The first runner records each tree's
verdict under the id of the `git push` process both descend from; the second finds it there
and says so instead of running the commands again. A verdict is only ever reused inside the
same push (same process, still alive): a new push judges afresh.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.output import Word
from taydash_hooks.results import Finding
from taydash_hooks.statefiles import read_private, write_private

FILE = "this-push.json"
_DEPTH = 12  # git -> pre-commit -> its legacy hook -> sh -> python: a handful of levels


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def push_id() -> str | None:
    """``<pid>:<start time>`` of the `git push` this hook runs under, or None (not a push)."""
    pid = os.getppid()
    for _ in range(_DEPTH):
        if pid <= 1:
            return None
        fields = _stat(pid)
        if len(fields) < 20:
            return None
        if git.running(pid) == "push":
            return f"{pid}:{fields[19]}"  # the start time: a reused pid is another push
        pid = int(fields[1])  # the parent
    return None


class ThisPush:
    """The verdicts already given in the current push (empty outside of one)."""

    def __init__(self, repo: git.Repo) -> None:
        self.path = repo.state_dir / FILE
        self.id = push_id()
        self.verdicts: dict[str, list[str]] = {}
        if self.id is None:
            return
        try:
            doc = json.loads(read_private(self.path))
            if doc.get("push") == self.id and isinstance(doc.get("verdicts"), dict):
                self.verdicts = {k: v for k, v in doc["verdicts"].items()
                                 if isinstance(v, list) and len(v) == 2}
        except (OSError, ValueError, AttributeError):
            pass

    def seen(self, key: str) -> Finding | None:
        """The verdict this push already gave for ``key``, said as such."""
        got = self.verdicts.get(key)
        if got is None:
            return None
        word, reason = got
        return Finding(Word(word), f"{reason} (already judged in this push by the other "
                                   "installed hook; not run again)")

    def record(self, key: str, finding: Finding) -> None:
        if self.id is None:
            return
        self.verdicts[key] = [finding.word.value, finding.reason]
        write_private(self.path, json.dumps({"push": self.id, "verdicts": self.verdicts}).encode())
