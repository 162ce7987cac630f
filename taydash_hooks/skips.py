"""``TAYDASH_SKIP=validate,tags,snapshot``: skip named checks for one command, loudly."""

from __future__ import annotations

import os

from taydash_hooks.errors import usage
from taydash_hooks.output import say

NAMES = ("validate", "tags", "snapshot")


def skipped(name: str) -> bool:
    """True when ``name`` is listed in TAYDASH_SKIP (and says so on stderr)."""
    raw = os.environ.get("TAYDASH_SKIP", "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = names - set(NAMES)
    if unknown:
        raise usage(
            f"TAYDASH_SKIP names unknown check {sorted(unknown)[0]!r} "
            f"(known: {', '.join(NAMES)})."
        )
    if name in names:
        say(f"WARNING: {name} check skipped because TAYDASH_SKIP={raw}")
        return True
    return False
