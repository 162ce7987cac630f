"""What the POSIX-sh shims run: ``python -m taydash_hooks.hook_main HOOK ARGS``.

No click, no GitPython, no minio here: every import on this path is paid on
every push. Each hook's code is imported only once it is known to be needed.
"""

from __future__ import annotations

import sys

from taydash_hooks.errors import Exit, TaydashError

USAGE = (
    "usage: python -m taydash_hooks.hook_main "
    "{pre-push REMOTE URL | reference-transaction STATE | pre-receive | "
    "pre-commit {validate,check-tags,snapshot-pushed-tags}}"
)


def dispatch(argv: list[str]) -> int:
    """Run the hook named in ``argv`` with git's stdin; return the exit code."""
    if not argv:
        raise TaydashError(USAGE)
    name, args = argv[0], argv[1:]
    if name == "pre-push" and len(args) == 2:
        stdin = sys.stdin.buffer.read()
        from taydash_hooks import fast_push

        done = fast_push.try_cached(stdin)
        if done is not None:
            return done
        _logging()
        from taydash_hooks import pre_push

        return pre_push.run_hook(args[0], args[1], stdin)
    _logging()
    if name == "reference-transaction" and len(args) == 1:
        from taydash_hooks import ref_transaction

        return ref_transaction.run_hook(args[0], sys.stdin.buffer.read())
    if name == "pre-receive" and not args:
        from taydash_hooks import pre_receive

        return pre_receive.run_hook(sys.stdin.buffer.read())
    if name == "pre-commit" and len(args) == 1:
        from taydash_hooks import pre_commit_plugin

        return pre_commit_plugin.run(args[0])
    raise TaydashError(USAGE)


def _logging() -> None:
    from taydash_hooks.output import setup_logging, verbosity_from_env

    setup_logging(verbosity_from_env())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit codes of SPEC.md, one sentence and no traceback on a known failure."""
    import signal

    # A terminal hang-up or a kill(1) cleans up like Ctrl-C: temp worktrees,
    # partial uploads and child process groups are removed in `finally` blocks.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        code = dispatch(sys.argv[1:] if argv is None else argv)
    except TaydashError as exc:
        print(f"taydash: {exc.message}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        print("taydash: interrupted", file=sys.stderr)
        code = Exit.INTERRUPTED
    sys.stdout.flush()
    sys.exit(int(code))


if __name__ == "__main__":
    main()
