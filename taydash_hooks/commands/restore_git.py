"""`taydash restore git TAG [--branch NAME] [--path P...]`: bring back code from a tag.

A new branch, or chosen paths into the working tree; never `reset --hard`,
never over uncommitted changes.
"""

from __future__ import annotations

from pathlib import Path

from taydash_hooks import git
from taydash_hooks.errors import Exit, refused, usage
from taydash_hooks.output import say


def run(cwd: Path, tag: str, branch: str | None, paths: list[str]) -> int:
    repo = git.find_repo(cwd)
    if repo.toplevel is None:
        raise usage("restore git needs a work tree; this is a bare repository.")
    commit = git.rev_parse(f"refs/tags/{tag}^{{commit}}", repo.root)
    if commit is None:
        raise usage(f"there is no tag {tag!r} pointing at a commit.")
    if paths:
        if branch:
            raise usage("give --branch or --path, not both.")
        dirty = git.git("status", "--porcelain", "--", *paths, cwd=repo.root).out.splitlines()
        if dirty:
            raise refused("uncommitted changes in " + ", ".join(line[3:] for line in dirty[:10])
                          + "; commit or stash them before restoring these paths.")
        res = git.git("restore", f"--source={commit}", "--worktree", "--", *paths,
                      cwd=repo.root, check=False)
        if res.returncode != 0:
            raise refused(f"git restore failed: {res.err.strip().splitlines()[-1]}")
        say(f"restored {', '.join(paths)} from {tag} into the working tree "
            "(review with git diff, then commit)")
        return Exit.OK
    name = branch or f"restore-{tag}"
    if git.rev_parse(f"refs/heads/{name}", repo.root):
        raise refused(f"branch {name} already exists; choose another with --branch.")
    res = git.git("branch", "--", name, commit, cwd=repo.root, check=False)
    if res.returncode != 0:
        raise usage(f"cannot create branch {name}: {res.err.strip().splitlines()[-1]}")
    say(f"branch {name} now points at {tag} ({commit[:12]}); git switch {name}")
    return Exit.OK
