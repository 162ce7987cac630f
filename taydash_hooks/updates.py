"""Ref updates: what a push (or a server update, or a local tag) does to each ref.

Every hook flavour reads its stdin with :func:`read` and classifies the rows; every
check (protected branches, tag policy, validation, snapshots) takes the result.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import git, hook_input
from taydash_hooks.errors import usage
from taydash_hooks.hook_input import Row, is_oid, is_zero


class Kind(str, enum.Enum):
    """What a ref update does on the remote."""

    BRANCH_CREATE = "branch create"
    FAST_FORWARD = "fast-forward"
    FORCE = "non-fast-forward"
    DELETE = "deletion"
    TAG_CREATE = "tag create"
    TAG_MOVE = "tag move"
    UNCHANGED = "unchanged"
    OTHER = "other ref"


@dataclass(frozen=True)
class RefUpdate:
    """One line of pre-push stdin: ``<local ref> <local oid> <remote ref> <remote oid>``."""

    local_ref: str
    local_oid: str
    remote_ref: str
    remote_oid: str
    kind: Kind = Kind.OTHER
    by_oid: bool = False  # pushed as a raw object id (`git push origin <oid>:refs/heads/x`)

    @property
    def is_tag(self) -> bool:
        return self.remote_ref.startswith("refs/tags/")

    @property
    def is_branch(self) -> bool:
        return self.remote_ref.startswith("refs/heads/")

    @property
    def name(self) -> str:
        """The remote ref without ``refs/heads/`` or ``refs/tags/``."""
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.remote_ref.startswith(prefix):
                return self.remote_ref[len(prefix) :]
        return self.remote_ref


def read(data: bytes, hook: str) -> list[Row]:
    """``hook``'s stdin as 4-tuples (:mod:`taydash_hooks.hook_input`); a line git would not
    write is a usage error (exit 2)."""
    try:
        return hook_input.rows(data, hook)
    except hook_input.BadLine as exc:
        raise usage(f"{exc}.") from None


def existing(oids: Iterable[str], cwd: Path | None = None) -> dict[str, str]:
    """Object type of each oid that exists locally, with one ``git cat-file`` call."""
    wanted = sorted(set(oids))
    if not wanted:
        return {}
    res = git.git(
        "cat-file", "--batch-check=%(objectname) %(objecttype)",
        input="".join(f"{o}\n" for o in wanted).encode(), cwd=cwd,
    )
    found = {}
    for line in res.out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] != "missing":
            found[parts[0]] = parts[1]
    return found


def classify(rows: list[Row], cwd: Path | None = None) -> list[RefUpdate]:
    """Classify every row (never stopping at the first); unknown local oids are exit 2."""
    known = existing([r[1] for r in rows if not is_zero(r[1])] + [r[3] for r in rows], cwd)
    updates = []
    for local_ref, local_oid, remote_ref, remote_oid in rows:
        by_oid = bool(is_oid(local_ref)) or (
            not local_ref.startswith("refs/") and local_ref != "(delete)" and local_ref != "HEAD"
        )
        if is_zero(local_oid) or local_ref == "(delete)":
            kind = Kind.DELETE
        elif local_oid not in known:
            raise usage(
                f"{remote_ref}: the pushed object {local_oid[:12]} does not exist in this "
                "repository (did the ref vanish during the push?)."
            )
        elif local_oid == remote_oid:
            kind = Kind.UNCHANGED
        elif remote_ref.startswith("refs/tags/"):
            kind = Kind.TAG_CREATE if is_zero(remote_oid) else Kind.TAG_MOVE
        elif remote_ref.startswith("refs/heads/"):
            if is_zero(remote_oid):
                kind = Kind.BRANCH_CREATE
            elif remote_oid in known and git.is_ancestor(remote_oid, local_oid, cwd):
                kind = Kind.FAST_FORWARD
            else:
                # A remote tip we do not have cannot be proven an ancestor: fail closed.
                kind = Kind.FORCE
        else:
            kind = Kind.OTHER
        updates.append(RefUpdate(local_ref, local_oid, remote_ref, remote_oid, kind, by_oid))
    return updates
