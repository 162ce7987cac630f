"""The detached background snapshot: ``python -m taydash_hooks.lifecycle.job LOG TAG``.

It runs through the one entry like every other process (:mod:`taydash_hooks.entry`):
a refusal keeps its code, a crash is 3 with a traceback log, a SIGTERM or SIGHUP is
130 after the rollback. Whatever the outcome, it is recorded for `taydash health`.
"""

from __future__ import annotations

import sys

from taydash_hooks import config as config_mod
from taydash_hooks import entry, git
from taydash_hooks.errors import TaydashError
from taydash_hooks.lifecycle.snapshot import snapshot
from taydash_hooks.output import setup_logging


def run(log_path: str, tag: str) -> int:
    """Take the snapshot of ``tag`` (and what follows one: :mod:`taydash_hooks.lifecycle.snapshot`);
    record how it ended for `taydash health` (the log is ``log_path``)."""
    setup_logging(0)
    repo = git.find_repo()
    cfg = config_mod.load(repo)
    try:
        snapshot(repo, cfg, tag, background_log=log_path)
    except TaydashError as exc:
        raise TaydashError(f"snapshot of {tag} FAILED: {exc.message}", exc.code) from None
    return 0


def main(argv: list[str]) -> None:
    """``LOG TAG`` from the command line, through the one entry."""
    if len(argv) != 2:
        print("usage: python -m taydash_hooks.lifecycle.job LOG TAG", file=sys.stderr)
        sys.exit(2)
    entry.main(lambda: run(argv[0], argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
