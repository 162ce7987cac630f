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
from taydash_hooks.output import setup_logging
from taydash_hooks.snapshots.take import take
from taydash_hooks.snapshots.triggers import record_status


def run(log_path: str, tag: str) -> int:
    """Take the snapshot of ``tag``; record how it ended (the log is ``log_path``), and push
    the metrics when ``[metrics] push_url`` is set, whatever the outcome."""
    setup_logging(0)
    repo = git.find_repo()
    cfg = config_mod.load(repo)
    try:
        return _take(repo, cfg, log_path, tag)
    finally:
        from taydash_hooks.lifecycle.metrics import push_after

        push_after(repo, cfg, "the background snapshot")


def _take(repo: git.Repo, cfg: config_mod.Config, log_path: str, tag: str) -> int:
    try:
        doc = take(repo, cfg, tag)
    except TaydashError as exc:
        record_status(repo, tag, False, exc.message, log_path)
        raise TaydashError(f"snapshot of {tag} FAILED: {exc.message}", exc.code) from None
    except KeyboardInterrupt:
        record_status(repo, tag, False, "interrupted (a signal ended the run; rolled back)",
                      log_path)
        raise
    except BaseException as exc:
        record_status(repo, tag, False, f"{type(exc).__name__}: {exc}", log_path)
        raise
    record_status(repo, tag, True, f"{len(doc.artifacts)} artifact(s)", log_path)
    return 0


def main(argv: list[str]) -> None:
    """``LOG TAG`` from the command line, through the one entry."""
    if len(argv) != 2:
        print("usage: python -m taydash_hooks.lifecycle.job LOG TAG", file=sys.stderr)
        sys.exit(2)
    entry.main(lambda: run(argv[0], argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
