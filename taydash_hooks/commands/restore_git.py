"""`taydash restore git TAG [--branch NAME] [--path P...] [--force]`: bring back code from a tag.

A new branch, or chosen paths into the working tree; never `reset --hard`. A deleted path
comes back (the most common reason to restore one); a modified one is overwritten only with
``--force``.
"""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import git
from taydash_hooks.errors import Exit, refused, usage
from taydash_hooks.output import say


def run(cwd: Path, tag: str, branch: str | None, paths: list[str], force: bool = False) -> int:
    """Restore ``paths`` of ``tag`` into the working tree, or make a branch at it."""
    repo = git.find_repo(cwd)
    if repo.toplevel is None:
        raise usage("restore git needs a work tree; this is a bare repository.")
    commit = git.rev_parse(f"refs/tags/{tag}^{{commit}}", repo.root)
    if commit is None:
        raise usage(f"there is no tag {tag!r} pointing at a commit.")
    if paths:
        if branch:
            raise usage("give --branch or --path, not both.")
        root = repo.root.resolve()
        for p in paths:
            # A path outside the work tree is a mistake in the command line (exit 2), said
            # before git is asked (it would fail, and that read as a broken environment).
            if not (root / p).resolve().is_relative_to(root):
                raise usage(f"--path {p} is outside the repository ({root}).")
        # A path the tag does not have is named, and the others are still restored (git
        # would restore none of them and print its raw pathspec error).
        absent = [p for p in paths if not git.git("ls-tree", "-r", "--name-only", commit, "--",
                                                    p, cwd=repo.root).out.strip()]
        if len(absent) == len(paths):
            raise refused(f"{tag} has no {', '.join(absent)}; nothing was restored.")
        paths = [p for p in paths if p not in absent]
        status = git.git("status", "--porcelain", "--", *paths, cwd=repo.root).out.splitlines()
        # "XY path": a D in either column is a deletion, which is what a restore is for.
        changed = [line for line in status if "D" not in line[:2]]
        if changed and not force:
            raise refused("uncommitted changes in " + ", ".join(ln[3:] for ln in changed[:10])
                          + "; commit or stash them, or pass --force to overwrite them.")
        # A staged deletion (`git rm`) is undone in the index too; otherwise only the files.
        staged_deletion = any(line[:1] == "D" for line in status)
        where = ["--staged", "--worktree"] if staged_deletion and not changed else ["--worktree"]
        res = git.git("restore", f"--source={commit}", *where, "--", *paths,
                      cwd=repo.root, check=False)
        if res.returncode != 0:
            raise refused(f"git restore failed: {res.err.strip().splitlines()[-1]}")
        say(f"restored {', '.join(paths)} from {tag} into the working tree "
            "(review with git diff, then commit)")
        if absent:
            raise refused(f"{tag} has no {', '.join(absent)}: not restored.")
        return Exit.OK
    name = branch or f"restore-{tag}"
    if git.rev_parse(f"refs/heads/{name}", repo.root):
        raise refused(f"branch {name} already exists; choose another with --branch.")
    res = git.git("branch", "--", name, commit, cwd=repo.root, check=False)
    if res.returncode != 0:
        raise usage(f"cannot create branch {name}: {res.err.strip().splitlines()[-1]}")
    say(f"branch {name} now points at {tag} ({commit[:12]}); git switch {name}")
    return Exit.OK
