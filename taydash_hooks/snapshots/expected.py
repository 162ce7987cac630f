"""Which backups should exist: one answer for `drill`, `health` and `metrics`.

Retention decides. A release tag has a backup, or retention removed it on purpose (its
``retention/<tag>.json`` record: "pruned", neither a pass nor a failure), or it is missing.
The record is store content, and anyone with the store's write key could plant one to hide
a missing backup; retention never removes the newest release's backup, so a record is
believed only for a tag older than a release that still has one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Presence(enum.Enum):
    BACKED_UP = "backed up"
    PRUNED = "pruned"  # retention removed it: neither a pass nor a failure
    MISSING = "missing"


@dataclass(frozen=True)
class Expected:
    tag: str
    presence: Presence
    # A retention record that was not believed (no newer release has a backup).
    unbelieved_record: bool = False


def expected(tags: Iterable[str], backed_up: set[str], pruned: set[str]) -> list[Expected]:
    """The presence of each release tag in ``tags`` (newest first), given the tags with a
    backup and the tags with a retention record."""
    found: list[Expected] = []
    newer_backed_up = False
    for tag in tags:
        if tag in backed_up:
            found.append(Expected(tag, Presence.BACKED_UP))
            newer_backed_up = True
        elif tag in pruned and newer_backed_up:
            found.append(Expected(tag, Presence.PRUNED))
        else:
            found.append(Expected(tag, Presence.MISSING, unbelieved_record=tag in pruned))
    return found
