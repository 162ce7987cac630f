"""Loading ``.taydash.toml`` / ``[tool.taydash]`` into typed, frozen objects.

The search order: ``TAYDASH_CONFIG``, then ``.taydash.toml``, then ``[tool.taydash]`` in
``pyproject.toml`` (docs/CONFIGURATION.md lists every key). Each feature is on only when
its table is present; inside a table a missing key takes its default. An
unknown key, a wrong type or a bad pattern is an error naming the file, the
key and what was expected: this is a gate, a typo must not switch it off.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from taydash_hooks.errors import usage
from taydash_hooks.git import Repo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# How a key is checked: ("str"|"bool"|"int"|"number"|"strlist", extra check or None).
# The extra check returns an error fragment ("expected ...") or None, and may
# normalise the value by returning it through ``_Normalised``.
KeyCheck = Callable[[Any], "str | _Normalised | None"]


@dataclass(frozen=True)
class _Normalised:
    value: Any


def _key(kind: str, check: KeyCheck | None = None) -> dict[str, Any]:
    return {"kind": kind, "check": check}


def _range(lo: float, hi: float, *, above: bool = False, what: str = "a number") -> KeyCheck:
    """A number in [lo, hi] (or (lo, hi] with ``above``): the documented range of a key."""
    low = f"greater than {lo:g}" if above else f"from {lo:g}"

    def check(v: Any) -> str | None:
        ok = (v > lo if above else v >= lo) and v <= hi  # NaN fails both
        return None if ok else f"{what} {low} to {hi:g}"

    return check


# The documented ranges (docs/COMMANDS.md, "Limits").
_TIMEOUT = _range(0, 86400, above=True, what="a number of seconds")  # one day per command
_LOCK_DAYS = _range(0, 36500, what="an integer number of days")  # S3's own 100-year ceiling
_PORT = _range(1, 65535, what="a TCP port")
_DAYS = _range(0, 36500, above=True, what="a number of days")
_COMMITS = _range(0, 1_000_000, what="an integer")
_MIB = _range(0, 1_048_576, above=True, what="a number of MiB")


def _non_empty(v: Any) -> str | None:
    return None if v else "a non-empty value"


def _patterns(v: Any) -> str | None:
    for p in v:
        if not p or any(c.isspace() or ord(c) < 32 for c in p):
            return f"fnmatch patterns without spaces or control characters (bad: {p!r})"
    return None


def _naming(v: Any) -> str | None:
    if v == "convention":
        return None
    if isinstance(v, str) and v.startswith("regex:"):
        from taydash_hooks.patterns import compile_custom

        try:
            compile_custom(v[len("regex:") :])
        except ValueError as exc:
            return ('"convention" or "regex:<RE2 pattern>" (linear time: no backreferences or '
                    f"lookaround; RE2 says: {exc})")
        return None
    return '"convention" or "regex:<RE2 pattern>"'


def _one_of(*choices: str) -> KeyCheck:
    def check(v: Any) -> str | None:
        return None if v in choices else "one of " + ", ".join(f'"{c}"' for c in choices)

    return check


def _subset_of(*choices: str) -> KeyCheck:
    def check(v: Any) -> str | None:
        bad = [x for x in v if x not in choices]
        return None if not bad else "a list of " + ", ".join(f'"{c}"' for c in choices)

    return check


_HEX = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")


def _fingerprints(v: Any) -> str | _Normalised | None:
    # Fingerprints are often pasted from `gpg -k` with spaces and in lowercase.
    norm = tuple(re.sub(r"\s+", "", x).upper() for x in v)
    for x in norm:
        if not _HEX.fullmatch(x):
            return f"40 or 64 hex digit OpenPGP fingerprints (bad: {x!r})"
    return _Normalised(norm)


@dataclass(frozen=True)
class RetiredKey:
    """A signing key rotated out on ``until`` (a day, UTC): what it signed before still holds."""

    fingerprint: str
    until: date

    @property
    def until_timestamp(self) -> float:
        """The first second at which the key no longer signs (``until``, 00:00 UTC)."""
        return datetime.combine(self.until, datetime.min.time(), timezone.utc).timestamp()


def _retired(v: Any) -> str | _Normalised | None:
    expected = ('tables {fingerprint = "40 or 64 hex digits", until = "YYYY-MM-DD"} (the day '
                "the key stopped signing)")
    keys: list[RetiredKey] = []
    for item in v:
        if not isinstance(item, dict) or set(item) != {"fingerprint", "until"} \
                or not isinstance(item["fingerprint"], str):
            return expected
        fpr = re.sub(r"\s+", "", item["fingerprint"]).upper()
        until = item["until"]
        if isinstance(until, str):
            try:
                until = date.fromisoformat(until)
            except ValueError:
                return expected
        if isinstance(until, datetime) or not isinstance(until, date) or not _HEX.fullmatch(fpr):
            return expected
        keys.append(RetiredKey(fpr, until))
    return _Normalised(tuple(keys))


def _recipients(v: Any) -> str | None:
    bad = [r for r in v if not r.strip() or r.startswith("-")]
    return f"OpenPGP recipients (a fingerprint, key id or e-mail; not {bad[0]!r})" if bad else None


def _store_url(v: Any) -> str | None:
    if v.startswith("file://") and len(v) > len("file://"):
        return None
    if re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?", v):
        return None
    return '"file://PATH" or "s3://BUCKET/PREFIX"'


_ENDPOINT = re.compile(r"(?:https?://)?[A-Za-z0-9_.-]+(?::[0-9]{1,5})?")


def _endpoint(v: Any) -> str | None:
    return None if v == "" or _ENDPOINT.fullmatch(v) else 'host:port, e.g. "minio:9000" (or "")'


def _http_url(v: Any) -> str | None:
    return None if re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", v) else "an http(s):// URL"


def _push_url(v: Any) -> str | None:
    if v == "":
        return None
    expected = ('an http(s):// URL without user:password@ (e.g. '
                '"http://victoriametrics:8428/api/v1/import/prometheus")')
    if not re.fullmatch(r"https?://[^\s/@]+(/[^\s]*)?", v):
        # user:password@host would keep a secret in the configuration file
        return expected
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError for a port that is none
    except ValueError:
        return expected  # "http://[::1:9/x": an address that is none, said at load
    return None if parts.hostname else expected


@dataclass(frozen=True)
class ValidateConfig:
    commands: tuple[str, ...] = field(default=(), metadata=_key("strlist"))
    timeout: float = field(default=900.0, metadata=_key("number", _TIMEOUT))
    isolate: bool = field(default=True, metadata=_key("bool"))
    cache: bool = field(default=True, metadata=_key("bool"))


@dataclass(frozen=True)
class PushConfig:
    protected: tuple[str, ...] = field(default=("main",), metadata=_key("strlist", _patterns))


@dataclass(frozen=True)
class TagsConfig:
    release: tuple[str, ...] = field(default=("v*",), metadata=_key("strlist", _patterns))
    naming: str = field(default="convention", metadata=_key("str", _naming))
    require_annotated: bool = field(default=True, metadata=_key("bool"))
    require_signed: bool = field(default=True, metadata=_key("bool"))
    formats: tuple[str, ...] = field(
        default=("openpgp", "ssh"), metadata=_key("strlist", _subset_of("openpgp", "ssh"))
    )
    openpgp_fingerprints: tuple[str, ...] = field(
        default=(), metadata=_key("strlist", _fingerprints)
    )
    openpgp_keys: str = field(default=".taydash/keys.asc", metadata=_key("str", _non_empty))
    allowed_signers: str = field(
        default=".taydash/allowed_signers", metadata=_key("str", _non_empty)
    )
    allow_expired_keys: bool = field(default=False, metadata=_key("bool"))
    check_at_creation: bool = field(default=True, metadata=_key("bool"))
    # Rotated-out keys with the day they stopped signing (what they signed before holds), and
    # compromised keys (nothing they signed is believed). SECURITY.md, "Rotating the signing key".
    retired_openpgp_fingerprints: tuple[RetiredKey, ...] = field(
        default=(), metadata=_key("list", _retired))
    revoked_openpgp_fingerprints: tuple[str, ...] = field(
        default=(), metadata=_key("strlist", _fingerprints))


@dataclass(frozen=True)
class S3Config:
    endpoint: str = field(default="localhost:9000", metadata=_key("str", _non_empty))
    secure: bool = field(default=False, metadata=_key("bool"))
    region: str = field(default="", metadata=_key("str"))
    object_lock_days: int = field(default=0, metadata=_key("int", _LOCK_DAYS))
    # The server ignores conditional writes and only one machine ever snapshots.
    unsafe_single_writer: bool = field(default=False, metadata=_key("bool"))


@dataclass(frozen=True)
class PostgresConfig:
    databases: tuple[str, ...] = field(default=("taydash",), metadata=_key("strlist", _non_empty))
    host: str = field(default="localhost", metadata=_key("str", _non_empty))
    port: int = field(default=5432, metadata=_key("int", _PORT))
    user: str = field(default="postgres", metadata=_key("str", _non_empty))
    exec: tuple[str, ...] = field(default=(), metadata=_key("strlist"))
    # zstd by default: pg_dump's gzip is a snapshot's bottleneck (docs/COMMANDS.md, "Compression").
    compression: str = field(default="zstd", metadata=_key("str", _one_of("zstd", "gzip", "none")))
    # pg_dumpall --globals-only --no-role-passwords beside the dumps: a new cluster needs them.
    roles: bool = field(default=True, metadata=_key("bool"))
    # Each dump cut into content-defined chunks stored once (snapshots/chunks.py): a tag stores
    # what changed. Dumps encrypted with encrypt_to are kept whole.
    dedup: bool = field(default=False, metadata=_key("bool"))


@dataclass(frozen=True)
class VictoriaMetricsConfig:
    url: str = field(default="http://localhost:8428", metadata=_key("str", _http_url))
    storage_data_path: str = field(
        default="/var/lib/victoria-metrics", metadata=_key("str", _non_empty)
    )
    vmbackup: str = field(default="vmbackup", metadata=_key("str", _non_empty))
    vmrestore: str = field(default="vmrestore", metadata=_key("str", _non_empty))
    # A prefix (docker compose exec -T victoriametrics) under which vmbackup, vmrestore and
    # every read of storage_data_path run; paths are then the ones seen inside.
    exec: tuple[str, ...] = field(default=(), metadata=_key("strlist"))
    # The S3 endpoint as vmbackup sees it from inside ("minio:9000"); default [snapshots.s3]'s.
    s3_endpoint: str = field(default="", metadata=_key("str", _endpoint))


DURATION = re.compile(r"(?:[0-9]+[ymwdh])+")


def _duration(v: Any) -> str | None:
    hours = {"y": 8760, "m": 720, "w": 168, "d": 24, "h": 1}
    if v == "" or (DURATION.fullmatch(v) and sum(
            int(n) * hours[u] for n, u in re.findall(r"([0-9]+)([ymwdh])", v)) <= 1000 * 8760):
        return None
    return 'a duration like "30d", "12h" or "1y6m" of at most a thousand years (or "")'


@dataclass(frozen=True)
class RetentionConfig:
    keep_last: int = field(default=0, metadata=_key("int", _COMMITS))
    keep_monthly: int = field(default=0, metadata=_key("int", _COMMITS))
    keep_within: str = field(default="", metadata=_key("str", _duration))


@dataclass(frozen=True)
class ConfigBundleConfig:
    paths: tuple[str, ...] = field(default=(), metadata=_key("strlist"))
    recipients: tuple[str, ...] = field(default=(), metadata=_key("strlist", _recipients))


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of `taydash health` ([health] is optional)."""

    max_days_since_release: float = field(default=30.0, metadata=_key("number", _DAYS))
    max_days_since_snapshot: float = field(default=30.0, metadata=_key("number", _DAYS))
    max_unpushed_commits: int = field(default=20, metadata=_key("int", _COMMITS))
    large_blob_mib: float = field(default=1.0, metadata=_key("number", _MIB))


@dataclass(frozen=True)
class MetricsConfig:
    """Where `taydash metrics` are pushed after each snapshot, verify, drill and prune."""

    push_url: str = field(default="", metadata=_key("str", _push_url))
    # The repo label of every series (default: the origin remote's repository name).
    repo: str = field(default="", metadata=_key("str"))
    timeout: float = field(default=10.0, metadata=_key("number", _range(0, 300, above=True,
                                                                           what="seconds")))


@dataclass(frozen=True)
class DrillConfig:
    """The drill's environment rebuild (lifecycle/environment.py): the tag's compose stack
    started fresh beside the live one, restored, and ``commands`` run against it."""

    environment: bool = field(default=False, metadata=_key("bool"))
    commands: tuple[str, ...] = field(default=(), metadata=_key("strlist"))
    pull: bool = field(default=False, metadata=_key("bool"))
    timeout: float = field(default=900.0, metadata=_key("number", _TIMEOUT))


KINDS = ("postgres", "victoriametrics", "config")


@dataclass(frozen=True)
class SnapshotsConfig:
    on_tag: tuple[str, ...] = field(default=("v*",), metadata=_key("strlist", _patterns))
    kinds: tuple[str, ...] = field(default=(), metadata=_key("strlist", _subset_of(*KINDS)))
    store: str = field(default="", metadata=_key("str", _store_url))
    on_push_missing: str = field(
        default="snapshot", metadata=_key("str", _one_of("snapshot", "block", "warn"))
    )
    mode: str = field(default="foreground", metadata=_key("str", _one_of("foreground", "background")))
    # OpenPGP recipients every database dump is encrypted to while it streams.
    encrypt_to: tuple[str, ...] = field(default=(), metadata=_key("strlist", _recipients))
    # Manifests signed with user.signingkey and checked by every reader (snapshots/signing.py).
    # "" is not set: "required" where [tags] requires signed tags, else "auto" (signing.mode).
    signed_manifests: str = field(
        default="", metadata=_key("str", _one_of("auto", "required", "off")))
    s3: S3Config | None = field(default=None, metadata={"kind": "table"})
    postgres: PostgresConfig | None = field(default=None, metadata={"kind": "table"})
    victoriametrics: VictoriaMetricsConfig | None = field(
        default=None, metadata={"kind": "table"}
    )
    config: ConfigBundleConfig | None = field(default=None, metadata={"kind": "table"})
    retention: RetentionConfig | None = field(default=None, metadata={"kind": "table"})


@dataclass(frozen=True)
class Config:
    """The whole configuration; a feature is None when its table is absent."""

    root: Path
    source: Path | None = None
    validate: ValidateConfig | None = field(default=None, metadata={"kind": "table"})
    push: PushConfig | None = field(default=None, metadata={"kind": "table"})
    tags: TagsConfig | None = field(default=None, metadata={"kind": "table"})
    snapshots: SnapshotsConfig | None = field(default=None, metadata={"kind": "table"})
    health: HealthConfig | None = field(default=None, metadata={"kind": "table"})
    metrics: MetricsConfig | None = field(default=None, metadata={"kind": "table"})
    drill: DrillConfig | None = field(default=None, metadata={"kind": "table"})

    @property
    def empty(self) -> bool:
        return not any((self.validate, self.push, self.tags, self.snapshots))

    def path(self, value: str) -> Path:
        """A configured path, relative to the repository root unless absolute."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p


_TABLES: dict[str, type[Any]] = {
    "validate": ValidateConfig,
    "push": PushConfig,
    "tags": TagsConfig,
    "snapshots": SnapshotsConfig,
    "snapshots.s3": S3Config,
    "snapshots.postgres": PostgresConfig,
    "snapshots.victoriametrics": VictoriaMetricsConfig,
    "snapshots.config": ConfigBundleConfig,
    "snapshots.retention": RetentionConfig,
    "health": HealthConfig,
    "metrics": MetricsConfig,
    "drill": DrillConfig,
}

T = TypeVar("T")

_KIND_TEXT = {
    "str": "a string",
    "bool": "true or false",
    "int": "an integer",
    "number": "a number",
    "strlist": "a list of strings",
    "list": "a list",
}


def _type_ok(kind: str, v: Any) -> bool:
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "strlist":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "list":
        return isinstance(v, list)
    raise AssertionError(kind)


def _shown(raw: Any) -> str:
    # A refused value is repeated so the user sees the typo, never with a password in it.
    from taydash_hooks.redact import redact

    return redact(repr(raw))


def _build(cls: type[T], data: Any, table: str, source: str) -> T:
    where = f"{source}: [{table}]"
    if not isinstance(data, dict):
        raise usage(f"{where} must be a table.")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        f = known.get(key)
        if f is None or "kind" not in f.metadata:
            names = ", ".join(n for n, g in known.items() if "kind" in g.metadata)
            raise usage(f"{where} has an unknown key {key!r} (expected one of: {names}).")
        kind = f.metadata["kind"]
        if kind == "table":
            values[key] = _build(_TABLES[f"{table}.{key}"], raw, f"{table}.{key}", source)
            continue
        if not _type_ok(kind, raw):
            raise usage(f"{where} {key}: expected {_KIND_TEXT[kind]}, got {_shown(raw)}.")
        value = tuple(raw) if kind in ("strlist", "list") else raw
        if kind == "number":
            value = float(raw)
        check: KeyCheck | None = f.metadata["check"]
        verdict = check(value) if check else None
        if isinstance(verdict, _Normalised):
            value = verdict.value
        elif verdict is not None:
            raise usage(f"{where} {key}: expected {verdict}, got {_shown(raw)}.")
        values[key] = value
    return cls(**values)


def _finish_snapshots(s: SnapshotsConfig, source: str) -> SnapshotsConfig:
    present = tuple(k for k in KINDS if getattr(s, k) is not None)
    kinds = s.kinds or present
    missing = [k for k in kinds if getattr(s, k) is None]
    if missing:
        raise usage(
            f"{source}: [snapshots] kinds: expected kinds with their own table, "
            f"but [snapshots.{missing[0]}] is missing."
        )
    if s.config is not None and s.config.paths and not s.config.recipients:
        raise usage(
            f"{source}: [snapshots.config] recipients: expected at least one OpenPGP "
            "recipient when paths are set (the bundle is never stored unencrypted)."
        )
    return SnapshotsConfig(**{**{f.name: getattr(s, f.name) for f in fields(s)}, "kinds": kinds})


def _finish_tags(t: TagsConfig, source: str) -> None:
    retired = {k.fingerprint for k in t.retired_openpgp_fingerprints}
    both = (retired | set(t.revoked_openpgp_fingerprints)) & set(t.openpgp_fingerprints)
    if both:
        raise usage(f"{source}: [tags] {sorted(both)[0]} is allowed and also retired or revoked; "
                    "a rotated-out key leaves openpgp_fingerprints.")
    if t.require_signed and not t.openpgp_fingerprints and "ssh" not in t.formats:
        raise usage(
            f"{source}: [tags] openpgp_fingerprints: expected at least one allowed fingerprint "
            "when require_signed is true and ssh is not in formats."
        )


_TOP = ("validate", "push", "tags", "snapshots", "health", "metrics", "drill")


def parse(data: Mapping[str, Any], root: Path, source: Path | None) -> Config:
    """Build a :class:`Config` from the taydash table of a TOML document."""
    name = str(source) if source else "<config>"
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in _TOP:
            raise usage(f"{name}: unknown table [{key}] (expected one of: {', '.join(_TOP)}).")
        values[key] = _build(_TABLES[key], raw, key, name)
    if "snapshots" in values:
        values["snapshots"] = _finish_snapshots(values["snapshots"], name)
    if "tags" in values:
        _finish_tags(values["tags"], name)
    return Config(root=root, source=source, **values)


MAX_CONFIG_BYTES = 1024 * 1024


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; anything unreadable is one sentence and exit 2."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise usage(f"{path}: cannot read the configuration ({exc.strerror}).") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise usage(f"{path}: the configuration is larger than {MAX_CONFIG_BYTES} bytes.")
    try:
        doc: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
        return doc
    except UnicodeDecodeError:
        raise usage(f"{path}: the configuration is not UTF-8 text.") from None
    except tomllib.TOMLDecodeError as exc:
        raise usage(f"{path}: not valid TOML ({exc}).") from None
    except RecursionError:
        raise usage(f"{path}: the configuration nests tables or arrays too deeply.") from None


def _taydash_table(path: Path) -> dict[str, Any] | None:
    doc = _read_toml(path)
    if path.name != "pyproject.toml":
        return doc
    tool = doc.get("tool", {})
    table = tool.get("taydash") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise usage(f"{path}: [tool.taydash] must be a table.")
    return table


def config_file(repo: Repo, env: Mapping[str, str] | None = None) -> Path | None:
    """Which file configures ``repo``: ``TAYDASH_CONFIG``, ``.taydash.toml``, then
    ``pyproject.toml`` with a ``[tool.taydash]`` table (a bare repository: ``taydash.toml`` in
    its git dir); None when there is none."""
    env = os.environ if env is None else env
    override = env.get("TAYDASH_CONFIG")
    if override:
        p = Path(override)
        if not p.is_file():
            raise usage(f"TAYDASH_CONFIG points at {override}, which is not a file.")
        return p
    if repo.toplevel is None:
        p = repo.git_dir / "taydash.toml"
        return p if p.is_file() else None
    for name in (".taydash.toml", "pyproject.toml"):
        p = repo.toplevel / name
        if p.is_file():
            if name == "pyproject.toml" and _taydash_table(p) is None:
                return None
            return p
    return None


def load(repo: Repo, env: Mapping[str, str] | None = None) -> Config:
    """Load the configuration of ``repo``; an empty :class:`Config` when none exists."""
    path = config_file(repo, env)
    if path is None:
        return Config(root=repo.root)
    table = _taydash_table(path) or {}
    return parse(table, repo.root, path)
