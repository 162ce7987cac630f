"""The outcome of the last verify and drill of this clone, kept for `health` and `metrics`.

One small 0600 JSON file per activity under .git/taydash/results/: when it finished, whether
it passed, how many backups it looked at and how many failed. Local state, like the
background snapshot's status file: the store is not told (anyone may write there).
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import asdict, dataclass

from taydash_hooks import git
from taydash_hooks.statefiles import read_private, write_private

FOLDER = "results"


class Activity(enum.Enum):
    VERIFY = "verify"  # `backups verify` (one, --all, --last) and `verify TAG`
    DRILL = "drill"


@dataclass(frozen=True)
class Outcome:
    """One finished verify or drill."""

    finished: float  # UNIX time
    ok: bool
    checked: int  # backups (or release tags) it looked at
    failed: int  # of them, how many did not pass (a deep step that was not possible counts)
    seconds: float = 0.0


def remember(repo: git.Repo, activity: Activity, ok: bool, checked: int, failed: int,
             seconds: float = 0.0, now: float | None = None) -> None:
    """Record the outcome of ``activity`` (it replaces the previous one)."""
    outcome = Outcome(time.time() if now is None else now, ok, checked, failed, round(seconds, 3))
    write_private(repo.state_dir / FOLDER / f"{activity.value}.json",
                  json.dumps(asdict(outcome)).encode())


def last(repo: git.Repo, activity: Activity) -> Outcome | None:
    """The last recorded outcome of ``activity``; None when there is none (or it is unreadable:
    a hand-edited file is no outcome)."""
    try:
        doc = json.loads(read_private(repo.state_dir / FOLDER / f"{activity.value}.json"))
        return Outcome(float(doc["finished"]), bool(doc["ok"]), int(doc["checked"]),
                       int(doc["failed"]), float(doc.get("seconds", 0.0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
