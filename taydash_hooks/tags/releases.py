"""Which tags are releases: local tag names, and the ones ``[tags] release`` selects."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.config import Config


def local_tags(cwd: Path) -> dict[str, str]:
    """Every local tag name and the object id its ref holds."""
    return {name: oid for name, (oid, _) in git.tag_targets(cwd).items()}


def release_tags(repo: git.Repo, cfg: Config) -> list[tuple[str, int]]:
    """Tags matching ``tags.release`` (``v*`` without a [tags] table), newest first, with their
    unix time."""
    patterns = cfg.tags.release if cfg.tags else ("v*",)
    out = git.out("for-each-ref", "--sort=-creatordate",
                  "--format=%(refname:strip=2) %(creatordate:unix)", "refs/tags", cwd=repo.root)
    rows = []
    for line in out.splitlines():
        name, _, when = line.rpartition(" ")
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            rows.append((name, int(when or 0)))
    return rows
