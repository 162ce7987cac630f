"""Strict readers of JSON that comes from the store (manifests, a kind's artifact fields).

Anyone with the store's write key may have written it: every value is checked for its
type and form before anything uses it, and a wrong one is :class:`Bad` with the field's
name, which the caller turns into one sentence (exit 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from taydash_hooks.errors import TaydashError, refused
from taydash_hooks.store.base import check_key

_HEX = frozenset("0123456789abcdef")


class Bad(Exception):
    """A field that is missing or not of its form: the message names it."""


def string(doc: Mapping[str, Any], name: str, optional: bool = False) -> Any:
    value = doc.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise Bad(f"{name} is not a string")
    return value


# Every number read from the store is bounded: a 400-digit integer is JSON too, and would
# overflow a float or a later sum. A size fits S3's and a file system's 64 bits.
MAX_SIZE = 2**63 - 1
MAX_SECONDS = 10**9  # about 32 years: no step of a backup takes longer


def size(doc: Mapping[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
        raise Bad(f"{name} is not a size")
    return value


def seconds(doc: Mapping[str, Any], name: str) -> float:
    """A duration in seconds; 0 when absent; refused when it is not a bounded number."""
    value = doc.get(name)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= MAX_SECONDS:  # NaN fails both comparisons
        raise Bad(f"{name} is not a duration")
    return float(value)


def sha256(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or set(value) - _HEX:
        raise Bad(f"{name} is not a SHA-256")
    return value


def store_key(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise Bad(f"{name} is not a key")
    try:
        check_key(value)
    except TaydashError:
        raise Bad(f"{name} {value!r} is not a plain relative key") from None
    return value


def strings(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Bad(f"{name} is not a list of strings")
    return tuple(value)


def flag(doc: Mapping[str, Any], name: str) -> bool:
    value = doc.get(name, False)
    if not isinstance(value, bool):
        raise Bad(f"{name} is not true or false")
    return value


def only(doc: Mapping[str, Any], known: frozenset[str]) -> None:
    """A field the kind does not know (a newer taydash's, or a forgery) is refused."""
    unknown = sorted(set(doc) - known)
    if unknown:
        raise Bad(f"unknown field {unknown[0]!r}")


@contextlib.contextmanager
def reading(where: str) -> Iterator[None]:
    """``with reading("the artifact X"):`` turns :class:`Bad` into one refusal (exit 1)."""
    try:
        yield
    except Bad as exc:
        raise refused(f"{where} is not valid ({exc}).") from None


@contextlib.contextmanager
def of_artifact(kind: str, key: str, doc: Mapping[str, Any],
                known: frozenset[str]) -> Iterator[Mapping[str, Any]]:
    """A kind's own fields of one artifact, for its typed reader: unknown fields and
    :class:`Bad` values are one refusal naming the artifact (exit 1)."""
    with reading(f"the {kind} artifact {key}"):
        only(doc, known)
        yield doc


def timestamp(iso: object) -> float | None:
    """UNIX time of an ISO 8601 text from a manifest or a status file (``Z`` and no zone both
    mean UTC); None when it is empty or not one: store contents are not trusted to be."""
    from datetime import datetime, timezone

    if not isinstance(iso, str) or not iso:
        return None
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
