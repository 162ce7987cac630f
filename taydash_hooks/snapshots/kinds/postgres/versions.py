"""PostgreSQL versions, compared before they fail in a way nobody can read.

pg_dump refuses a server of a newer major version; pg_restore cannot read an
archive written by a newer pg_dump; a dump of a newer server rarely restores
into an older one. Each case is decided on version numbers (asked of the
tools and the server by :mod:`.client`, or recorded in the manifest), never
on error text, and said with both versions and the fix. Pure comparisons only.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"\b([0-9]+)(?:\.[0-9]+)+")
EXEC_EXAMPLE = '["docker", "compose", "exec", "-T", "postgres"]'


def number(version: str) -> str:
    """``pg_dump (PostgreSQL) 18.6 (Debian ...)`` -> ``18.6``; "" when there is none."""
    m = _NUMBER.search(version)
    return m.group(0) if m else ""


def major(version: str) -> int | None:
    """The major version in ``version`` (``15.18`` -> 15), None when there is none."""
    m = _NUMBER.search(version)
    return int(m.group(1)) if m else None


def dump_problem(client: str, server: str, where: str) -> str | None:
    """Why pg_dump ``client`` cannot dump ``server`` (both version strings), or None."""
    cmaj, smaj = major(client), major(server)
    if cmaj is None or smaj is None or cmaj >= smaj:
        return None
    return (f"pg_dump {number(client)} is older than the PostgreSQL {number(server)} server at "
            f"{where}, and pg_dump cannot dump a newer server; nothing was stored. Run the "
            f"server's own pg_dump through [snapshots.postgres] exec (e.g. {EXEC_EXAMPLE}) or "
            f"install pg_dump {smaj} or newer.")


def restore_problem(dumped_with: str, source: str, restorer: str, target: str,
                    where: str) -> str | None:
    """Why pg_restore ``restorer`` could not restore a dump written by ``dumped_with`` from a
    ``source`` server into a ``target`` server, when versions explain it; else None."""
    dmaj, rmaj = major(dumped_with), major(restorer)
    if dmaj is not None and rmaj is not None and rmaj < dmaj:
        return (f"the dump was written by pg_dump {number(dumped_with)}, and pg_restore "
                f"{number(restorer)} is too old to read it. Restore with pg_restore {dmaj} or "
                f"newer: through [snapshots.postgres] exec (e.g. {EXEC_EXAMPLE}, the server's "
                "own) or a newer client.")
    smaj, tmaj = major(source), major(target)
    if smaj is not None and tmaj is not None and tmaj < smaj:
        return (f"the dump comes from a PostgreSQL {number(source)} server, and the server at "
                f"{where} runs {number(target)}: PostgreSQL does not restore into an older major "
                f"version. Restore onto a server of version {smaj} or newer (--host/--port).")
    return None
