"""What belongs to the database itself, not its contents: encoding and locale, owner, grants,
settings, connection limit, comment.

A restore into a new database (``--target-db``) creates it empty; how it was created (``CREATE
DATABASE ... ENCODING ... LOCALE ...``), its owner, ``GRANT CONNECT ON DATABASE``, ``ALTER
DATABASE ... SET`` and ``ALTER ROLE ... IN DATABASE ... SET`` are in the archive (``pg_restore
--create --schema-only`` prints them) under the old name. They are read strictly (the same lexer
as the roles script), rebuilt onto the new name with every name quoted by us, and applied where
their roles exist; the rest is listed as not applied.

The order is pg_restore --create's: the database is created from template0 with the archive's
encoding and locale, and its settings are applied before the data comes back (a constraint or
an input may depend on them), except the ones that would stop the restore's own sessions
(:data:`_AFTER_DATA`); owner, grants and the rest follow the data (:func:`plan`), so a restoring
user that is not the owner keeps what it needs to create the objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taydash_hooks.snapshots.kinds.postgres.roles import Statement, Token, setting, tokens
from taydash_hooks.snapshots.kinds.postgres.sql import quote_ident, quote_literal

# Settings that load code or switch identity in every session: never from an archive. Names
# are compared lowercased, as PostgreSQL resolves them ("Role" is role).
_UNSAFE = {"session_preload_libraries", "local_preload_libraries", "shared_preload_libraries",
           "role", "session_authorization"}
_PRIVILEGES = {"CONNECT", "TEMPORARY", "TEMP", "CREATE", "ALL"}
# Settings that would end or stall the restore's own sessions (pg_restore's, our psql's) if the
# database had them from the start: applied after the data. pg_restore --create applies them
# first, and a database with default_transaction_read_only = on then cannot be restored at all.
_AFTER_DATA = {"default_transaction_read_only", "transaction_read_only", "idle_session_timeout",
               "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
               "transaction_timeout"}
# What of CREATE DATABASE a new database takes from the archive: how its text is encoded and
# compared. TEMPLATE is always template0 (a forged archive could name a database to copy);
# TABLESPACE, OID and COLLATION_VERSION describe the old server, not the database.
_CREATE_OPTIONS = ("ENCODING", "LOCALE_PROVIDER", "LOCALE", "LC_COLLATE", "LC_CTYPE",
                   "ICU_LOCALE", "ICU_RULES", "BUILTIN_LOCALE")
_PROVIDERS = {"libc", "icu", "builtin"}


@dataclass
class DatabaseSpec:
    """The database-level statements of one archive, parsed."""

    owner: str | None = None
    dumped: str | None = None  # the database the archive's CREATE DATABASE names
    # CREATE DATABASE's options as written: (option, value), every value a string
    created: list[tuple[str, str]] = field(default_factory=list)
    connection_limit: int | None = None
    settings: list[tuple[str, list[str]]] = field(default_factory=list)
    role_settings: list[tuple[str, str, list[str]]] = field(default_factory=list)
    # (GRANT or REVOKE, privileges, grantee, with grant option)
    acl: list[tuple[str, list[str], str, bool]] = field(default_factory=list)
    comment: str | None = None
    unknown: int = 0  # DATABASE statements of a shape we do not apply


def _privileges(st: Statement) -> list[str]:
    privs = [st.keyword(*_PRIVILEGES)]
    if privs[0] == "ALL" and st.at("PRIVILEGES"):
        st.keyword("PRIVILEGES")
    while (tok := st.peek()) is not None and tok.kind == "punct" and tok.text == ",":
        st.next()
        privs.append(st.keyword(*_PRIVILEGES))
    return ["TEMPORARY" if p == "TEMP" else p for p in privs]


def _grantee(st: Statement) -> str:
    tok = st.peek()
    if tok is not None and tok.kind == "word" and tok.text.upper() == "PUBLIC":
        st.next()
        return "PUBLIC"
    return st.name()


def _create(st: Statement) -> list[tuple[str, str]]:
    """``WITH OPTION = value ...;`` of CREATE DATABASE (pg_dump writes WITH and ``=``)."""
    st.keyword("WITH")
    options: list[tuple[str, str]] = []
    while (tok := st.peek()) is not None and tok.kind == "word":
        option = st.next().text.upper()
        st.punct("=")
        value = st.next()
        if value.kind not in ("string", "word", "name", "number") or \
                option in (o for o, _ in options):
            raise st.fail()
        options.append((option, value.text))
    st.end()
    return options


def _one(toks: list[Token], source: str, spec: DatabaseSpec) -> None:
    st = Statement(toks)
    verb = st.keyword("ALTER", "GRANT", "REVOKE", "COMMENT", "CREATE")
    if verb == "CREATE":
        st.keyword("DATABASE")
        spec.dumped = st.name()
        if spec.dumped != source:
            raise st.fail()
        spec.created = _create(st)
    elif verb == "ALTER" and st.at("DATABASE"):
        st.keyword("DATABASE")
        if st.name() != source:
            raise st.fail()
        if st.at("OWNER"):
            st.keyword("OWNER")
            st.keyword("TO")
            spec.owner = st.name()
            st.end()
        elif st.at("CONNECTION"):
            st.keyword("CONNECTION")
            st.keyword("LIMIT")
            st.punct("=")
            limit = st.next()
            if limit.kind != "number" or not limit.text.lstrip("-").isdigit():
                raise st.fail()
            spec.connection_limit = int(limit.text)
            st.end()
        else:
            spec.settings.append(setting(st))
    elif verb == "ALTER":
        st.keyword("ROLE")
        role = st.name()
        st.keyword("IN")
        st.keyword("DATABASE")
        if st.name() != source:
            raise st.fail()
        param, values = setting(st)
        spec.role_settings.append((role, param, values))
    elif verb in ("GRANT", "REVOKE"):
        privs = _privileges(st)
        st.keyword("ON")
        st.keyword("DATABASE")
        if st.name() != source:
            raise st.fail()
        st.keyword("TO" if verb == "GRANT" else "FROM")
        who = _grantee(st)
        option = False
        if verb == "GRANT" and st.at("WITH"):
            st.keyword("WITH")
            st.keyword("GRANT")
            st.keyword("OPTION")
            option = True
        st.end()
        spec.acl.append((verb, privs, who, option))
    else:
        st.keyword("ON")
        st.keyword("DATABASE")
        if st.name() != source:
            raise st.fail()
        st.keyword("IS")
        spec.comment = st.string()
        st.end()


def parse(sql: str, source: str) -> DatabaseSpec:
    """The statements about database ``source`` in ``pg_restore --create --schema-only``
    output; one that does not parse is counted in ``unknown`` and never applied."""
    spec = DatabaseSpec()
    for line in sql.splitlines():
        if "DATABASE" not in line or line.startswith("--"):
            continue
        if not line.startswith(("CREATE DATABASE", "ALTER DATABASE", "ALTER ROLE", "GRANT ",
                                "REVOKE ", "COMMENT ON DATABASE")):
            continue
        try:
            _one(tokens(line), source, spec)
        except ValueError:
            spec.unknown += 1
    return spec


@dataclass
class Applied:
    """The SQL for the new database and what it does and does not bring back."""

    sql: str
    done: list[str]
    skipped: list[str]
    create: str = ""  # CREATE DATABASE's options (:func:`before`)


def _set(db: str, param: str, values: list[str]) -> str:
    """``ALTER DATABASE db SET param TO values`` (``db`` quoted, ``values`` as parsed)."""
    return f"ALTER DATABASE {db} SET {quote_ident(param)} TO {', '.join(values)};"


def before(spec: DatabaseSpec | None, target: str) -> Applied:
    """How ``target`` is created (``create``: from template0, with the archive's encoding and
    locale) and the settings it gets before the data (``sql``); no role is needed for them."""
    spec = spec or DatabaseSpec()
    db = quote_ident(target)
    options, lines, done, skipped = ["TEMPLATE = template0"], [], [], []
    for option, value in spec.created:
        if option in _CREATE_OPTIONS and (option != "LOCALE_PROVIDER" or value in _PROVIDERS):
            options.append(f"{option} = {quote_literal(value)}")
            done.append(f"{option.lower().replace('_', ' ')} {value}")
        elif option != "TEMPLATE" or value != "template0":
            skipped.append(f"{option.lower()} {value}" + (
                " (a restored database is always made from template0)"
                if option == "TEMPLATE" else ""))
    for param, values in spec.settings:
        if param.lower() not in _UNSAFE and param.lower() not in _AFTER_DATA:
            lines.append(_set(db, param, values))
            done.append(f"setting {param}")
    return Applied("".join(f"{line}\n" for line in lines), done, skipped,
                   create=" WITH " + " ".join(options))


def plan(spec: DatabaseSpec, target: str, roles: set[str]) -> Applied:
    """What follows the data onto ``target``: owner, the settings :func:`before` left, role
    settings, grants, connection limit, comment, for the roles in ``roles`` (the server's,
    after --with-roles)."""
    db = quote_ident(target)
    lines, done, skipped = ["BEGIN;"], [], []
    if spec.owner is not None:
        if spec.owner in roles:
            lines.append(f"ALTER DATABASE {db} OWNER TO {quote_ident(spec.owner)};")
            done.append(f"owner {spec.owner}")
        else:
            skipped.append(f"owner {spec.owner} (no such role here: --with-roles creates it)")
    for param, values in spec.settings:
        if param.lower() in _UNSAFE:
            skipped.append(f"setting {param}")
        elif param.lower() in _AFTER_DATA:
            lines.append(_set(db, param, values))
            done.append(f"setting {param}")
    for role, param, values in spec.role_settings:
        if param.lower() in _UNSAFE or role not in roles:
            skipped.append(f"setting {param} of role {role}"
                           + ("" if param.lower() in _UNSAFE else " (no such role here)"))
            continue
        lines.append(f"ALTER ROLE {quote_ident(role)} IN DATABASE {db} SET {quote_ident(param)} "
                     f"TO {', '.join(values)};")
        done.append(f"setting {param} of role {role}")
    for verb, privs, who, option in spec.acl:
        if who != "PUBLIC" and who not in roles:
            skipped.append(f"{verb.lower()} {','.join(privs)} for {who} (no such role here)")
            continue
        grantee = "PUBLIC" if who == "PUBLIC" else quote_ident(who)
        word = "TO" if verb == "GRANT" else "FROM"
        lines.append(f"{verb} {', '.join(privs)} ON DATABASE {db} {word} {grantee}"
                     f"{' WITH GRANT OPTION' if option else ''};")
        done.append(f"{verb.lower()} {','.join(privs)} {'to' if verb == 'GRANT' else 'from'} {who}")
    if spec.connection_limit is not None:
        lines.append(f"ALTER DATABASE {db} CONNECTION LIMIT = {spec.connection_limit};")
        done.append(f"connection limit {spec.connection_limit}")
    if spec.comment is not None:
        lines.append(f"COMMENT ON DATABASE {db} IS {quote_literal(spec.comment)};")
        done.append("comment")
    if spec.unknown:
        skipped.append(f"{spec.unknown} database statement(s) of a shape taydash does not apply")
    lines.append("COMMIT;")
    return Applied("\n".join(lines) + "\n", done, skipped)
