"""git's hook stdin, read in one place: pre-push, pre-receive and reference-transaction lines.

Every hook flavour (and the pre-push fast path, which must stay light: this module
imports nothing) turns its stdin into the same 4-tuples
``(local ref, local oid, remote ref, remote oid)``:

- pre-push: ``<local ref> <local oid> <remote ref> <remote oid>``, as git writes it;
- pre-receive and reference-transaction: ``<old> <new> <ref>``, read as
  ``(ref or "(delete)", new, ref, old)``, so a server update and a local ref change
  look like the push that would make them.
"""

from __future__ import annotations

Row = tuple[str, str, str, str]
_HEX = frozenset("0123456789abcdef")
LAYOUTS = {"pre-push": 4, "pre-receive": 3, "reference-transaction": 3}


class BadLine(ValueError):
    """A line that is not what git writes: its number, its text and what was expected."""

    def __init__(self, hook: str, number: int, raw: str, why: str) -> None:
        super().__init__(f"{hook} input line {number} {why}: {raw[:120]!r}")
        self.hook, self.number, self.raw, self.why = hook, number, raw, why


def is_oid(text: str) -> bool:
    """A full SHA-1 or SHA-256 object id in lowercase hex."""
    return len(text) in (40, 64) and not set(text) - _HEX


def is_zero(oid: str) -> bool:
    return set(oid) == {"0"}


def rows(data: bytes, hook: str) -> list[Row]:
    """Every non-empty line of ``hook``'s stdin as a 4-tuple; :class:`BadLine` at the first
    line that is not one (a hook fails closed on input it does not understand).

    reference-transaction is the exception: git 2.45+ also reports symbolic-ref updates there
    (``ref:refs/heads/main`` in place of an oid), which are skipped, not refused.
    """
    width = LAYOUTS[hook]
    lenient = hook == "reference-transaction"
    found: list[Row] = []
    for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split(" ")
        if width == 4:
            if len(parts) != 4 or not is_oid(parts[1]) or not is_oid(parts[3]):
                raise BadLine(hook, n, raw, "is malformed (expected "
                              "'<local ref> <local oid> <remote ref> <remote oid>')")
            if not parts[2].startswith("refs/"):
                raise BadLine(hook, n, raw, f"names remote ref {parts[2]!r}, not under refs/")
            found.append((parts[0], parts[1], parts[2], parts[3]))
            continue
        if len(parts) != 3 or not is_oid(parts[0]) or not is_oid(parts[1]):
            if lenient:
                continue
            raise BadLine(hook, n, raw, "is malformed (expected '<old> <new> <ref>')")
        old, new, ref = parts
        found.append((ref if not is_zero(new) else "(delete)", new, ref, old))
    return found
