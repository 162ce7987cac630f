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

from taydash_hooks import git
from taydash_hooks.output import Word
from taydash_hooks.results import Finding
from taydash_hooks.statefiles import read_private, write_private

FILE = "this-push.json"
_DEPTH = 12  # git -> pre-commit -> its legacy hook -> sh -> python: a handful of levels


def _parent(pid: int) -> int | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one read of a proc file
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_git_push(pid: int) -> bool:
    try:
        argv = [a.decode("utf-8", "replace") for a in
                open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0") if a]  # noqa: SIM115
    except OSError:
        return False
    if not argv or os.path.basename(argv[0]) not in ("git", "git-push"):
        return False
    if os.path.basename(argv[0]) == "git-push":
        return True
    words = [a for a in argv[1:] if not a.startswith("-")]
    return bool(words) and words[0] == "push"


def push_id() -> str | None:
    """``<pid>:<start time>`` of the `git push` this hook runs under, or None (not a push)."""
    pid: int | None = os.getppid()
    for _ in range(_DEPTH):
        if pid is None or pid <= 1:
            return None
        if _is_git_push(pid):
            try:
                start = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]  # noqa: SIM115
            except (OSError, IndexError):
                return None
            return f"{pid}:{start}"
        pid = _parent(pid)
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
