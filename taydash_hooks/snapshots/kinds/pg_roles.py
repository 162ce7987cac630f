"""The roles script (``pg_dumpall --globals-only``): read strictly, applied only where missing.

The script comes from the store, and psql would run anything in it, shell
escapes (``\\!``) included. So it is never handed to psql as it is: every line
must be one of the few statement shapes pg_dumpall writes for roles, a
comment, or the ``\\restrict`` guard; anything else refuses the whole script.
The statements psql finally runs are rebuilt from what matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from taydash_hooks.errors import refused

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_STRING = r"'(?:[^']|'')*'"
_VALUE = rf"(?:{_STRING}|[A-Za-z0-9_.+-]+)"
_OPTION = r"(?:ADMIN|INHERIT|SET) (?:OPTION|TRUE|FALSE)"

_CREATE = re.compile(rf"CREATE ROLE ({_IDENT});")
_ALTER = re.compile(rf"ALTER ROLE ({_IDENT}) WITH(?: (?:[A-Z]+|CONNECTION LIMIT -?[0-9]+|"
                    rf"VALID UNTIL {_STRING}|PASSWORD {_STRING}))+;")
_CONFIG = re.compile(rf"ALTER ROLE ({_IDENT}) SET {_IDENT} TO {_VALUE}(?:, {_VALUE})*;")
_COMMENT = re.compile(rf"COMMENT ON ROLE ({_IDENT}) IS {_STRING};")
_GRANT = re.compile(rf"GRANT ({_IDENT}) TO ({_IDENT})((?: WITH {_OPTION}(?:, {_OPTION})*)?)"
                    rf"(?: GRANTED BY {_IDENT})?;")
_SET = re.compile(r"SET [a-z_]+ = (?:'[A-Za-z0-9_]*'|[A-Za-z0-9_]+);")
_RESTRICT = re.compile(r"\\(?:un)?restrict [A-Za-z0-9]+")
# Cluster objects that are not roles: tablespaces need folders on the target, parameter
# grants name settings of one version. Recognised and left out, and said so.
_OTHER = re.compile(rf"(?:CREATE TABLESPACE|ALTER TABLESPACE|COMMENT ON TABLESPACE) {_IDENT} "
                    rf"[^\\;]*;|GRANT [A-Z, ]+ ON (?:TABLESPACE|PARAMETER) [^\\;]*;")


def name(ident: str) -> str:
    """A role name as pg_roles has it: ``"a""b"`` -> ``a"b``."""
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


@dataclass
class Script:
    """What a roles script holds, statement by statement, each under the role it is about."""

    settings: list[str] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=dict)  # role -> CREATE/ALTER/COMMENT
    grants: list[tuple[str, str, str]] = field(default_factory=list)  # (role, member, SQL)
    left_out: int = 0


def parse(text: str, where: str) -> Script:
    """``text`` as a roles script; exit 1 naming the first line that is not one."""
    script = Script()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("--") or _RESTRICT.fullmatch(line):
            continue
        if "\\" in line:  # no role statement needs one; psql would read a meta-command
            raise refused(f"line {number} of {where} holds a backslash; a roles script from "
                          "pg_dumpall never runs psql commands, so nothing of it was applied.")
        if _SET.fullmatch(line):
            script.settings.append(line)
        elif m := (_CREATE.fullmatch(line) or _ALTER.fullmatch(line) or _CONFIG.fullmatch(line)
                   or _COMMENT.fullmatch(line)):
            script.roles.setdefault(name(m.group(1)), []).append(line)
        elif m := _GRANT.fullmatch(line):
            # The grantor is whoever applies it: the original one may not exist there.
            sql = f"GRANT {m.group(1)} TO {m.group(2)}{m.group(3)};"
            script.grants.append((name(m.group(1)), name(m.group(2)), sql))
        elif _OTHER.fullmatch(line):
            script.left_out += 1
        else:
            raise refused(f"line {number} of {where} is not a statement pg_dumpall writes for "
                          f"roles ({line[:60]!r}...); nothing of it was applied.")
    return script


def plan(script: Script, existing: set[str]) -> tuple[str, list[str], list[str]]:
    """The SQL that creates the roles missing from ``existing`` (one transaction), the roles it
    creates and the recorded roles it skips because they exist (they are left as they are)."""
    created = [role for role in script.roles if role not in existing]
    skipped = [role for role in script.roles if role in existing]
    lines = [*script.settings, "BEGIN;"]
    for role in created:
        lines += script.roles[role]
    new = set(created)
    lines += [sql for role, member, sql in script.grants if role in new or member in new]
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n", created, skipped
