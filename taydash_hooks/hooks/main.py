"""What the POSIX-sh shims run: ``python -m taydash_hooks.hooks.main HOOK ARGS``.

No click, no GitPython, no minio here: every import on this path is paid on
every push. Each hook's code is imported only once it is known to be needed.
"""

from __future__ import annotations

import sys

from taydash_hooks.errors import TaydashError

USAGE = (
    "usage: python -m taydash_hooks.hooks.main "
    "{pre-push REMOTE URL | reference-transaction STATE | pre-receive | "
    "pre-commit {validate,check-tags,snapshot-pushed-tags}}"
)


def dispatch(argv: list[str]) -> int:
    """Run the hook named in ``argv`` with git's stdin; return the exit code."""
    if not argv:
        raise TaydashError(USAGE)
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    name, args = argv[0], argv[1:]
    if name == "pre-push" and len(args) == 2:
        stdin = sys.stdin.buffer.read()
        from taydash_hooks.gate import fast_path

        done = fast_path.try_cached(stdin)
        if done is not None:
            return done
        _logging()
        from taydash_hooks.hooks import pre_push

        return pre_push.run_hook(args[0], args[1], stdin)
    _logging()
    if name == "reference-transaction" and len(args) == 1:
        from taydash_hooks.hooks import reference_transaction

        return reference_transaction.run_hook(args[0], sys.stdin.buffer.read())
    if name == "pre-receive" and not args:
        from taydash_hooks.hooks import pre_receive

        return pre_receive.run_hook(sys.stdin.buffer.read())
    if name == "pre-commit" and len(args) == 1:
        from taydash_hooks.hooks import pre_commit

        return pre_commit.run(args[0])
    raise TaydashError(USAGE)


def _logging() -> None:
    from taydash_hooks.output import setup_logging, verbosity_from_env

    setup_logging(verbosity_from_env())


def main(argv: list[str] | None = None) -> None:
    """Entry point of the shims: the one entry's exit codes (see :mod:`taydash_hooks.entry`)."""
    from taydash_hooks import entry

    entry.main(lambda: dispatch(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
