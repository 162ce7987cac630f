"""Plain functions around the git binary. Every git call goes through :func:`git`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import process
from taydash_hooks.errors import Exit, TaydashError, usage

ZERO_OID = "0" * 40

# Variables git exports to hooks that would point a git call or a validation
# command at the wrong repository, index or worktree. Kept: the ones that
# carry transport and config the user chose (same list as pre-commit).
_KEEP = {
    "GIT_EXEC_PATH",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_NO_VERIFY",
    "GIT_CONFIG_COUNT",
    "GIT_HTTP_PROXY_AUTHMETHOD",
    "GIT_ALLOW_PROTOCOL",
    "GIT_ASKPASS",
    "GIT_TERMINAL_PROMPT",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_NOSYSTEM",
}


def no_git_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment without the GIT_* variables a hook inherits."""
    source = os.environ if env is None else env
    return {
        k: v
        for k, v in source.items()
        if not k.startswith("GIT_")
        or k in _KEEP
        or k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))
    }


class GitError(TaydashError):
    """A git command failed; the message carries its command and stderr."""


def git(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = process.DEFAULT_TIMEOUT,
) -> process.Result:
    """Run ``git ARGS`` and return the result; raise :class:`GitError` on failure."""
    argv: Sequence[str] = ("git", *args)
    try:
        result = process.run(argv, cwd=cwd, input=input, env=env, timeout=timeout)
    except process.Timeout as exc:
        raise TaydashError(str(exc), Exit.ENVIRONMENT) from None
    if check and result.returncode != 0:
        detail = result.err.strip().splitlines()
        last = detail[-1] if detail else f"exit {result.returncode}"
        raise GitError(f"git {args[0]} failed: {last}", Exit.ENVIRONMENT)
    return result


def out(*args: str, cwd: str | os.PathLike[str] | None = None) -> str:
    """Stdout of a successful git command, without the trailing newline."""
    return git(*args, cwd=cwd).out.rstrip("\n")


@dataclass(frozen=True)
class Repo:
    """Where a repository lives, from one ``git rev-parse`` call."""

    git_dir: Path
    common_dir: Path
    toplevel: Path | None  # None in a bare repository

    @property
    def bare(self) -> bool:
        return self.toplevel is None

    @property
    def state_dir(self) -> Path:
        """Folder for taydash's own state (cache, logs, locks), shared by worktrees."""
        return self.common_dir / "taydash"

    @property
    def root(self) -> Path:
        """The work tree root, or the git dir of a bare repository."""
        return self.toplevel if self.toplevel is not None else self.git_dir


def find_repo(cwd: str | os.PathLike[str] | None = None) -> Repo:
    """Locate the repository around ``cwd``; exit 2 when there is none."""
    result = git(
        "rev-parse",
        "--path-format=absolute",
        "--git-dir",
        "--git-common-dir",
        "--is-bare-repository",
        "--show-toplevel",
        cwd=cwd,
        check=False,
    )
    lines = result.out.splitlines()
    # In a bare repository --show-toplevel fails after the other answers.
    bare_ok = len(lines) >= 3 and lines[2] == "true"
    if (result.returncode != 0 and not bare_ok) or len(lines) < 3:
        where = os.path.abspath(cwd) if cwd is not None else os.getcwd()
        raise usage(f"{where} is not a git repository (or any of its parents).")
    git_dir, common_dir, bare = lines[0], lines[1], lines[2]
    toplevel = lines[3] if bare == "false" and len(lines) > 3 else None
    return Repo(Path(git_dir), Path(common_dir), Path(toplevel) if toplevel else None)


def rev_parse(rev: str, cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The full object id of ``rev`` or None when it does not resolve."""
    result = git("rev-parse", "--verify", "--quiet", "--end-of-options", rev, cwd=cwd, check=False)
    return result.out.strip() if result.returncode == 0 else None


def tag_targets(cwd: str | os.PathLike[str] | None = None) -> dict[str, tuple[str, str]]:
    """Every tag: its object id and the commit it peels to (one ``for-each-ref`` for all,
    where a ``rev-parse`` per tag costs a process each)."""
    res = git("for-each-ref", "--format=%(refname:strip=2) %(objectname) %(*objectname)",
              "refs/tags", cwd=cwd, check=False)
    found: dict[str, tuple[str, str]] = {}
    for line in res.out.splitlines():
        parts = line.rsplit(" ", 2)
        if len(parts) == 3:
            name, oid, peeled = parts
            found[name] = (oid, peeled or oid)
    return found


def is_ancestor(old: str, new: str, cwd: str | os.PathLike[str] | None = None) -> bool:
    """True when ``old`` is an ancestor of ``new`` (both known locally)."""
    return git("merge-base", "--is-ancestor", old, new, cwd=cwd, check=False).returncode == 0


# git's global options that take a separate value (`git -C dir tag`).
_GLOBAL_WITH_VALUE = {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--exec-path",
                      "--super-prefix", "--config-env", "--list-cmds"}


def subcommand(argv: list[str]) -> str | None:
    """The subcommand of a git command line (``git -C x tag -s v1`` → ``tag``)."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def running(pid: int) -> str | None:
    """Which git command the process ``pid`` runs (``tag``, ``push``), from its command line;
    None when it is no git process (or is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    name = os.path.basename(argv[0]) if argv else ""
    if name.startswith("git-"):  # git-tag, git-push: the command itself
        return name[len("git-"):]
    return subcommand(argv) if name == "git" else None
