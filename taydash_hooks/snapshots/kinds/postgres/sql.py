"""Names and values as SQL text: every statement taydash writes itself quotes through here."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Always quoted: the name is exactly what we resolved, whatever it looks like."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A string constant, its quotes doubled."""
    return "'" + value.replace("'", "''") + "'"
