"""The roles script (``pg_dumpall --globals-only``): read strictly, able to create only what
is missing and never to escalate.

The script comes from the store, which someone else may have written. So:

- it is never handed to psql as it is: every statement must be one of the few shapes
  pg_dumpall writes for roles (anything else refuses the whole script), and what psql finally
  runs is rebuilt from the parsed parts, with every name quoted by us;
- names are resolved as PostgreSQL resolves them (``APP`` is ``app``, ``"APP"`` is ``APP``,
  ``U&"\\0061pp"`` is ``app``), so a role that exists is recognised however it is written;
- only roles the server lacks are created; an existing role is never altered;
- SUPERUSER, REPLICATION, BYPASSRLS and CREATEROLE are never granted (unless the operator
  allows privileged roles), and PASSWORD refuses the script: ``--no-role-passwords`` never
  writes one, so a script with one was not written by taydash;
- a membership (``GRANT a TO b``) is applied only when both ``a`` and ``b`` are roles this
  restore creates and ``a`` is neither privileged nor predefined (``pg_*``), and never WITH
  ADMIN OPTION (unless the operator allows privileged roles): otherwise a store writer could
  hand a login role an existing role that holds, or reaches through its own memberships,
  ``pg_execute_server_program`` or a superuser to ``SET ROLE`` to. Since every applied
  membership joins two new, unprivileged roles, no chain of them reaches anything more.

Whatever is not applied is listed, and the restore says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from taydash_hooks.errors import refused
from taydash_hooks.snapshots.kinds.postgres.sql import quote_ident, quote_literal

PRIVILEGED = ("SUPERUSER", "REPLICATION", "BYPASSRLS", "CREATEROLE")
_FLAGS = {"SUPERUSER", "CREATEDB", "CREATEROLE", "INHERIT", "LOGIN", "REPLICATION", "BYPASSRLS"}
# Settings that load code into every session of the role, or switch its identity: never from
# someone else's script. PostgreSQL resolves setting names case-insensitively
# ("Session_Preload_Libraries" is session_preload_libraries): compared lowercased.
_UNSAFE_SETTINGS = {"session_preload_libraries", "local_preload_libraries",
                    "shared_preload_libraries", "role", "session_authorization"}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<uident>[Uu]&"(?:[^"]|"")*")(?:\s+UESCAPE\s+'(?P<uesc>[^'])')?
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<string>'(?:[^']|'')*')
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?[A-Za-z]*)
  | (?P<punct>[,;=.])
""", re.VERBOSE)
_RESTRICT = re.compile(r"\\(?:un)?restrict [A-Za-z0-9]+")


@dataclass(frozen=True)
class Token:
    kind: str  # "name" (an identifier, resolved), "word" (a keyword, upper case), "string", ...
    text: str  # the resolved name, the upper-cased keyword, the string's value, ...


def _unicode_ident(body: str, escape: str) -> str:
    """The value of ``U&"..."`` with ``escape`` (``\\`` by default): ``\\XXXX``, ``\\+XXXXXX``."""
    if escape in "0123456789abcdefABCDEF+'\" \t\n":
        raise ValueError("invalid UESCAPE character")
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != escape:
            out.append(c)
            i += 1
            continue
        if body[i + 1:i + 2] == escape:
            out.append(escape)
            i += 2
        elif body[i + 1:i + 2] == "+" and re.fullmatch(r"[0-9A-Fa-f]{6}", body[i + 2:i + 8]):
            out.append(chr(int(body[i + 2:i + 8], 16)))
            i += 8
        elif re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 1:i + 5]):
            out.append(chr(int(body[i + 1:i + 5], 16)))
            i += 5
        else:
            raise ValueError("invalid Unicode escape")
    return "".join(out)


def tokens(line: str) -> list[Token]:
    """The tokens of one line; ValueError at anything PostgreSQL's lexer would not take here."""
    found, pos = [], 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None:
            raise ValueError(f"unexpected {line[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup if m.lastgroup != "uesc" else "uident"
        text = m.group(kind or "space")
        if kind == "space":
            continue
        if kind == "uident":
            text = m.group("uident")
            value = _unicode_ident(text[3:-1].replace('""', '"'), m.group("uesc") or "\\")
            found.append(Token("name", value))
        elif kind == "ident":
            found.append(Token("name", text[1:-1].replace('""', '"')))
        elif kind == "word":
            # PostgreSQL folds an unquoted identifier to lower case (ASCII letters only).
            found.append(Token("word", text))
        elif kind == "string":
            found.append(Token("string", text[1:-1].replace("''", "'")))
        else:
            found.append(Token(kind or "", text))
    if any(t.kind == "name" and not t.text for t in found):
        raise ValueError("a zero-length name")
    return found


def folded(word: str) -> str:
    return word.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                        "abcdefghijklmnopqrstuvwxyz"))


@dataclass
class Role:
    """What the script records of one role."""

    name: str
    flags: dict[str, bool] = field(default_factory=dict)  # LOGIN: True, SUPERUSER: False, ...
    connection_limit: int | None = None
    valid_until: str | None = None
    settings: list[tuple[str, list[str]]] = field(default_factory=list)  # (param, values SQL)
    comment: str | None = None

    @property
    def privileged(self) -> list[str]:
        return [f for f in PRIVILEGED if self.flags.get(f)]


@dataclass
class Script:
    """A roles script, parsed: every role with what it records, the memberships."""

    roles: dict[str, Role] = field(default_factory=dict)
    grants: list[tuple[str, str, list[str]]] = field(default_factory=list)  # role, member, opts
    left_out: int = 0  # tablespaces and parameter grants: not roles

    def role(self, name: str) -> Role:
        return self.roles.setdefault(name, Role(name))


class Statement:
    """A cursor over one statement's tokens; :meth:`fail` at anything unexpected."""

    def __init__(self, toks: list[Token]) -> None:
        self.toks, self.i = toks, 0

    def fail(self) -> ValueError:
        return ValueError("not a statement pg_dumpall writes for roles")

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.fail()
        self.i += 1
        return tok

    def keyword(self, *words: str) -> str:
        tok = self.next()
        if tok.kind != "word" or tok.text.upper() not in words:
            raise self.fail()
        return tok.text.upper()

    def at(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.text.upper() in words

    def name(self) -> str:
        tok = self.next()
        if tok.kind == "name":
            return tok.text
        if tok.kind == "word":
            return folded(tok.text)
        raise self.fail()

    def string(self) -> str:
        tok = self.next()
        if tok.kind != "string":
            raise self.fail()
        return tok.text

    def punct(self, char: str) -> None:
        tok = self.next()
        if tok.kind != "punct" or tok.text != char:
            raise self.fail()

    def end(self) -> None:
        self.punct(";")
        if self.peek() is not None:
            raise ValueError("more than one statement on a line")


def setting_value(st: Statement) -> str:
    """A setting value as SQL we write: a quoted string, a number, or a bare word."""
    tok = st.next()
    if tok.kind == "string":
        return quote_literal(tok.text)
    if tok.kind == "number":
        return tok.text
    if tok.kind == "word":
        return quote_literal(tok.text)
    raise st.fail()


def setting(st: Statement) -> tuple[str, list[str]]:
    """``SET param TO value[, value];`` (or ``= value``) up to the end of the statement."""
    st.keyword("SET")
    param = st.name()
    while (tok := st.peek()) is not None and tok.kind == "punct" and tok.text == ".":
        st.next()  # a custom setting: extension.name
        param += "." + st.name()
    if st.at("TO"):
        st.keyword("TO")
    else:
        st.punct("=")
    values = [setting_value(st)]
    while (tok := st.peek()) is not None and tok.kind == "punct" and tok.text == ",":
        st.next()
        values.append(setting_value(st))
    st.end()
    return param, values


def _alter(st: Statement, script: Script) -> None:
    role = script.role(st.name())
    if st.at("SET"):
        role.settings.append(setting(st))
        return
    st.keyword("WITH")
    while not (st.peek() and st.peek().kind == "punct"):  # type: ignore[union-attr]
        word = st.keyword(*_FLAGS, *(f"NO{f}" for f in _FLAGS), "CONNECTION", "VALID",
                          "PASSWORD")
        if word == "PASSWORD":
            raise ValueError("it sets a PASSWORD (pg_dumpall --no-role-passwords never writes "
                             "one: this script was not written by taydash)")
        if word == "CONNECTION":
            st.keyword("LIMIT")
            tok = st.next()
            if tok.kind != "number" or not re.fullmatch(r"-?[0-9]+", tok.text):
                raise st.fail()
            role.connection_limit = int(tok.text)
        elif word == "VALID":
            st.keyword("UNTIL")
            role.valid_until = st.string()
        elif word.startswith("NO") and word[2:] in _FLAGS:
            role.flags[word[2:]] = False
        else:
            role.flags[word] = True
    st.end()


def _grant(st: Statement, script: Script) -> None:
    granted = st.name()
    st.keyword("TO")
    member = st.name()
    options: list[str] = []
    if st.at("WITH"):
        st.keyword("WITH")
        while True:
            what = st.keyword("ADMIN", "INHERIT", "SET")
            value = st.keyword("OPTION", "TRUE", "FALSE")
            options.append(f"{what} {value}")
            tok = st.peek()
            if tok is None or tok.kind != "punct" or tok.text != ",":
                break
            st.next()
    if st.at("GRANTED"):  # the grantor is whoever applies it: the original may not exist there
        st.keyword("GRANTED")
        st.keyword("BY")
        st.name()
    st.end()
    script.grants.append((granted, member, options))


def _left_out(toks: list[Token], script: Script) -> None:
    """A tablespace or parameter grant: not applied, but still one statement on its line."""
    ends = [i for i, t in enumerate(toks) if t.kind == "punct" and t.text == ";"]
    if ends != [len(toks) - 1]:
        raise ValueError("more than one statement on a line")
    script.left_out += 1


def _statement(toks: list[Token], script: Script) -> None:
    st = Statement(toks)
    first = st.keyword("SET", "CREATE", "ALTER", "COMMENT", "GRANT")
    if first == "SET":  # session settings at the top: not applied (ours are fixed)
        st.name()
        st.punct("=")
        setting_value(st)
        st.end()
    elif first == "CREATE":
        if st.at("TABLESPACE"):
            _left_out(toks, script)
            return
        st.keyword("ROLE")
        script.role(st.name())
        st.end()
    elif first == "ALTER":
        if st.at("TABLESPACE"):
            _left_out(toks, script)
            return
        st.keyword("ROLE")
        _alter(st, script)
    elif first == "COMMENT":
        st.keyword("ON")
        if st.at("TABLESPACE"):
            _left_out(toks, script)
            return
        st.keyword("ROLE")
        role = script.role(st.name())
        st.keyword("IS")
        role.comment = st.string()
        st.end()
    elif first == "GRANT":
        if any(t.kind == "word" and t.text.upper() == "ON" for t in toks):
            _left_out(toks, script)  # GRANT ... ON TABLESPACE | PARAMETER
            return
        _grant(st, script)


def parse(text: str, where: str) -> Script:
    """``text`` as a roles script; exit 1 naming the first line that is not one."""
    script = Script()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("--") or _RESTRICT.fullmatch(line):
            continue
        # psql reads a backslash outside quotes as a meta-command (\! runs a shell): a line
        # may hold one only inside a U&"..." name, which never reaches psql as written.
        outside = re.sub(r'[Uu]&"(?:[^"]|"")*"', "", line)
        if "\\" in outside:
            raise refused(f"line {number} of {where} holds a backslash; a roles script from "
                          "pg_dumpall never runs psql commands, so nothing of it was applied.")
        try:
            _statement(tokens(line), script)
        except ValueError as exc:
            raise refused(f"line {number} of {where} is refused: {exc} ({line[:60]!r}); "
                          "nothing of it was applied.") from None
    return script


@dataclass
class Plan:
    """What applying a script to one server does: the SQL (one transaction), the roles it
    creates, the recorded roles that exist (left exactly as they are) and what it skips."""

    sql: str
    created: list[str]
    existing: list[str]
    skipped: list[str]


def plan(script: Script, existing: dict[str, bool], allow_privileged: bool = False,
         memberships: frozenset[tuple[str, str]] = frozenset()) -> Plan:
    """The SQL that creates the roles missing from ``existing`` (role -> whether it is
    privileged there) and the memberships it may grant (see the module docstring);
    ``memberships`` (granted, member) are the ones the server already has."""
    created = [r for r in script.roles if r not in existing]
    new = set(created)
    lines = ["BEGIN;"]
    skipped: list[str] = []
    privileged = {r for r, priv in existing.items() if priv}
    for name in created:
        role = script.roles[name]
        flags = dict(role.flags)
        if role.privileged:
            privileged.add(name)
            if not allow_privileged:
                for f in role.privileged:
                    flags[f] = False
                skipped.append(f"{'/'.join(role.privileged)} of role {name} (not granted: "
                               "--allow-privileged-roles)")
        attrs = " ".join(f if on else f"NO{f}" for f, on in sorted(flags.items()))
        if role.connection_limit is not None:
            attrs += f" CONNECTION LIMIT {role.connection_limit}"
        if role.valid_until is not None:
            attrs += f" VALID UNTIL {quote_literal(role.valid_until)}"
        lines.append(f"CREATE ROLE {quote_ident(name)}{' WITH ' + attrs if attrs else ''};")
        for param, values in role.settings:
            if param.lower() in _UNSAFE_SETTINGS:
                skipped.append(f"setting {param} of role {name}")
                continue
            lines.append(f"ALTER ROLE {quote_ident(name)} SET {quote_ident(param)} TO "
                         f"{', '.join(values)};")
        if role.comment is not None:
            lines.append(f"COMMENT ON ROLE {quote_ident(name)} IS {quote_literal(role.comment)};")
    for granted, member, options in script.grants:
        pair = f"membership {granted} -> {member}"
        if (granted, member) in memberships:
            skipped.append(f"{pair} (already there)")
            continue
        why = None
        if member not in new:
            why = f"{member} is not a role this restore creates"
        elif granted.startswith("pg_"):
            why = f"{granted} is a predefined role"
        elif granted in existing:
            # An existing role may hold, or reach through its own memberships, anything on
            # that server (pg_execute_server_program, a superuser to SET ROLE to): joining it
            # is never the script's to decide.
            why = f"{granted} exists on the server; only roles this restore creates are joined"
        elif granted not in new:
            why = f"{granted} does not exist"
        elif granted in privileged and not allow_privileged:
            why = f"{granted} is privileged"
        if why:
            skipped.append(f"{pair} ({why})")
            continue
        if not allow_privileged and any(o.startswith("ADMIN ") for o in options):
            options = [o for o in options if not o.startswith("ADMIN ")]
            skipped.append(f"ADMIN OPTION of {pair} (not granted: --allow-privileged-roles)")
        with_ = f" WITH {', '.join(options)}" if options else ""
        lines.append(f"GRANT {quote_ident(granted)} TO {quote_ident(member)}{with_};")
    lines.append("COMMIT;")
    return Plan("\n".join(lines) + "\n", created,
                [r for r in script.roles if r in existing], skipped)
