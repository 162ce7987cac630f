"""Parsing git's pre-push / pre-receive stdin into classified ref updates."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.errors import usage

_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


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

    @property
    def deleting(self) -> bool:
        return self.kind is Kind.DELETE


def _zero(oid: str) -> bool:
    return set(oid) == {"0"}


def parse_pre_push(data: bytes) -> list[tuple[str, str, str, str]]:
    """Split pre-push stdin into 4-tuples; a malformed line is a usage error (exit 2)."""
    rows = []
    for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split(" ")
        if len(parts) != 4 or not _OID.fullmatch(parts[1]) or not _OID.fullmatch(parts[3]):
            raise usage(
                f"pre-push input line {n} is malformed (expected "
                f"'<local ref> <local oid> <remote ref> <remote oid>'): {raw[:120]!r}."
            )
        if not parts[2].startswith("refs/"):
            raise usage(f"pre-push input line {n} names remote ref {parts[2]!r}, not under refs/.")
        rows.append((parts[0], parts[1], parts[2], parts[3]))
    return rows


def parse_pre_receive(data: bytes) -> list[tuple[str, str, str, str]]:
    """pre-receive stdin ``<old> <new> <ref>`` as the same 4-tuples as pre-push."""
    rows = []
    for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split(" ")
        if len(parts) != 3 or not _OID.fullmatch(parts[0]) or not _OID.fullmatch(parts[1]):
            raise usage(f"pre-receive input line {n} is malformed: {raw[:120]!r}.")
        old, new, ref = parts
        rows.append((ref if not _zero(new) else "(delete)", new, ref, old))
    return rows


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


def classify(rows: list[tuple[str, str, str, str]], cwd: Path | None = None) -> list[RefUpdate]:
    """Classify every row (never stopping at the first); unknown local oids are exit 2."""
    known = existing([r[1] for r in rows if not _zero(r[1])] + [r[3] for r in rows], cwd)
    updates = []
    for local_ref, local_oid, remote_ref, remote_oid in rows:
        by_oid = bool(_OID.fullmatch(local_ref)) or (
            not local_ref.startswith("refs/") and local_ref != "(delete)" and local_ref != "HEAD"
        )
        if _zero(local_oid) or local_ref == "(delete)":
            kind = Kind.DELETE
        elif local_oid not in known:
            raise usage(
                f"{remote_ref}: the pushed object {local_oid[:12]} does not exist in this "
                "repository (did the ref vanish during the push?)."
            )
        elif local_oid == remote_oid:
            kind = Kind.UNCHANGED
        elif remote_ref.startswith("refs/tags/"):
            kind = Kind.TAG_CREATE if _zero(remote_oid) else Kind.TAG_MOVE
        elif remote_ref.startswith("refs/heads/"):
            if _zero(remote_oid):
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
