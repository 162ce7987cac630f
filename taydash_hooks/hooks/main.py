"""What the POSIX-sh shims run: ``python -m taydash_hooks.hooks.main HOOK ARGS``.

No click, no GitPython, no minio here: every import on this path is paid on
every push. Each hook's code is imported only once it is known to be needed.
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: python -m taydash_hooks.hooks.main "
    "{pre-push REMOTE URL | reference-transaction STATE | pre-receive | "
    "pre-commit {validate,check-tags,snapshot-pushed-tags}}"
)


def dispatch(argv: list[str], stdin: bytes | None = None) -> int:
    """Run the hook named in ``argv`` with git's stdin (``stdin``: already read); return the
    exit code."""
    from taydash_hooks.errors import TaydashError

    if not argv:
        raise TaydashError(USAGE)
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    name, args = argv[0], argv[1:]
    if name == "pre-push" and len(args) == 2:
        if stdin is None:
            stdin = sys.stdin.buffer.read()
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


def _fast_pre_push(argv: list[str]) -> tuple[int | None, bytes | None]:
    """A re-push of validated commits, answered before anything else is imported (the
    entry, logging, site-packages): the exit code, or None and the stdin it read."""
    if len(argv) != 3 or argv[0] != "pre-push":
        return None, None
    stdin: bytes | None = None  # unread: the full path reads (and reports) it again
    try:
        stdin = sys.stdin.buffer.read()
        from taydash_hooks.gate import fast_path

        return fast_path.try_cached(stdin), stdin
    except KeyboardInterrupt:
        print("taydash: interrupted", file=sys.stderr)  # it changed nothing: no rollback
        sys.exit(130)
    except Exception:
        # Never a verdict of its own: whatever went wrong, the full path judges (and reports).
        return None, stdin


_SITE_LOADED = False


def _site() -> None:
    """The shims start Python without site (``-S``): load site-packages before the full path."""
    global _SITE_LOADED
    if sys.flags.no_site and not _SITE_LOADED:
        import site

        site.main()
        _SITE_LOADED = True


def main(argv: list[str] | None = None) -> None:
    """Entry point of the shims: the one entry's exit codes (see :mod:`taydash_hooks.entry`)."""
    args = sys.argv[1:] if argv is None else argv
    done, stdin = _fast_pre_push(args)
    if done is not None:
        sys.exit(done)
    _site()
    from taydash_hooks import entry

    entry.main(lambda: dispatch(args, stdin))


if __name__ == "__main__":
    main()
