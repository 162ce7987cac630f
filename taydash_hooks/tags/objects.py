"""Reading tag objects with `git cat-file --batch` and splitting off their signature."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import git

# How git recognises a tag signature (gpg-interface.c), by kind.
SIGNATURE_STARTS = {
    b"-----BEGIN PGP SIGNATURE-----": "openpgp",
    b"-----BEGIN PGP MESSAGE-----": "openpgp",
    b"-----BEGIN SSH SIGNATURE-----": "ssh",
    b"-----BEGIN SIGNED MESSAGE-----": "x509",
}
SIGNATURE_ENDS = (
    b"-----END PGP SIGNATURE-----",
    b"-----END PGP MESSAGE-----",
    b"-----END SSH SIGNATURE-----",
    b"-----END SIGNED MESSAGE-----",
)


@dataclass(frozen=True)
class GitObject:
    oid: str
    type: str
    body: bytes


@dataclass(frozen=True)
class TagObject:
    """An annotated tag: its headers, the signed payload and the signature block."""

    oid: str
    target: str
    target_type: str
    name: str
    tagger: str
    payload: bytes  # what the signature covers
    signature: bytes  # b"" when unsigned
    kind: str | None  # openpgp, ssh, x509 or None
    problem: str | None  # a malformed signature layout, when there is one


def read_objects(oids: Iterable[str], cwd: Path | None = None) -> dict[str, GitObject]:
    """Type and content of each oid, in one `git cat-file --batch` call."""
    wanted = list(dict.fromkeys(oids))
    if not wanted:
        return {}
    data = git.git("cat-file", "--batch", input="".join(f"{o}\n" for o in wanted).encode(),
                   cwd=cwd).stdout
    found: dict[str, GitObject] = {}
    pos = 0
    for oid in wanted:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if len(header) != 3:  # "<oid> missing"
            continue
        size = int(header[2])
        found[oid] = GitObject(header[0].decode(), header[1].decode(), data[pos:pos + size])
        pos += size + 1
    return found


def parse_tag(obj: GitObject) -> TagObject:
    """Split a tag object into headers, payload and signature (git's own rule)."""
    head, _, _ = obj.body.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        headers.setdefault(key.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    lines = obj.body.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip(b"\r\n") in SIGNATURE_STARTS]
    kind = None
    problem = None
    payload, signature = obj.body, b""
    if starts:
        first = starts[0]
        offset = sum(len(line) for line in lines[:first])
        payload, signature = obj.body[:offset], obj.body[offset:]
        kind = SIGNATURE_STARTS[lines[first].rstrip(b"\r\n")]
        sig_lines = [line.rstrip(b"\r\n") for line in lines[first:]]
        ends = [i for i, line in enumerate(sig_lines) if line in SIGNATURE_ENDS]
        trailing = [line for line in sig_lines[ends[-1] + 1:] if line.strip()] if ends else []
        if len(starts) > 1 or len(ends) > 1:
            problem = "several signature blocks in one tag"
        elif not ends:
            problem = "signature block is not terminated"
        elif trailing:
            problem = "unsigned text after the signature"
    return TagObject(
        oid=obj.oid,
        target=headers.get("object", ""),
        target_type=headers.get("type", ""),
        name=headers.get("tag", ""),
        tagger=headers.get("tagger", ""),
        payload=payload,
        signature=signature,
        kind=kind,
        problem=problem,
    )
