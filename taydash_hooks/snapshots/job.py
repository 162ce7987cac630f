"""The detached background snapshot: ``python -m taydash_hooks.snapshots.job LOG TAG``."""

from __future__ import annotations

import sys

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import TaydashError
from taydash_hooks.output import setup_logging
from taydash_hooks.snapshots.take import take
from taydash_hooks.snapshots.triggers import record_status


def main(argv: list[str]) -> int:
    log_path, tag = argv
    setup_logging(0)
    repo = git.find_repo()
    try:
        doc = take(repo, config_mod.load(repo), tag)
    except TaydashError as exc:
        print(f"taydash: snapshot of {tag} FAILED: {exc.message}", file=sys.stderr)
        record_status(repo, tag, False, exc.message, log_path)
        return int(exc.code)
    except BaseException as exc:
        record_status(repo, tag, False, f"{type(exc).__name__}: {exc}", log_path)
        raise
    record_status(repo, tag, True, f"{len(doc.artifacts)} artifact(s)", log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
