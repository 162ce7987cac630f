"""The remote a workflow command talks to, and what it holds (via `git ls-remote`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.errors import environment, refused, usage

NETWORK_TIMEOUT = 120.0


@dataclass(frozen=True)
class Upstream:
    remote: str
    branch: str  # the branch on the remote HEAD's branch pushes to


def current_branch(root: Path) -> str | None:
    res = git.git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=root, check=False)
    return res.out.strip() or None


def upstream(root: Path) -> Upstream:
    """HEAD's branch and its remote (upstream, else origin, else the only remote)."""
    branch = current_branch(root)
    if branch is None:
        raise refused("HEAD is detached; check out the branch to back up (git switch main).")
    remote = git.git("config", "--get", f"branch.{branch}.remote", cwd=root, check=False).out.strip()
    merge = git.git("config", "--get", f"branch.{branch}.merge", cwd=root, check=False).out.strip()
    remotes = git.out("remote", cwd=root).split()
    if not remote or remote == ".":
        remote = "origin" if "origin" in remotes else (remotes[0] if len(remotes) == 1 else "")
    if not remote:
        raise usage("this repository has no remote to push to (git remote add origin URL).")
    target = merge[len("refs/heads/"):] if merge.startswith("refs/heads/") else branch
    return Upstream(remote, target)


def ls_remote(root: Path, remote: str, *refs: str) -> dict[str, str]:
    """Ref → object id on the remote (annotated tags: the tag object, not the peeled ^{})."""
    try:
        res = git.git("ls-remote", "--", remote, *refs, cwd=root, check=False,
                      timeout=NETWORK_TIMEOUT)
    except Exception:
        raise environment(f"remote {remote} is unreachable (git ls-remote timed out).") from None
    if res.returncode != 0:
        last = res.err.strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        raise environment(f"remote {remote} is unreachable: {last[0]}")
    found = {}
    for line in res.out.splitlines():
        oid, _, ref = line.partition("\t")
        if not ref.endswith("^{}"):
            found[ref] = oid
    return found
