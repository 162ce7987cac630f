"""The pre-push hook's fast path: answer a re-push of validated commits with no git call.

Most pushes carry commits that already passed (pushed to another branch,
pushed again after a rejected push of something else). For those the
full gate would import the config loader, start git three times and hash
the command list; here two small JSON files answer. Anything this module
is not sure about returns None and the full path runs (imports only os,
sys and the C half of json: every millisecond here is paid on every push).
"""

from __future__ import annotations

import os
import sys

from taydash_hooks import hook_input

# Not `typing.TYPE_CHECKING`: importing typing costs every push a few milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from taydash_hooks.config import Config
    from taydash_hooks.git import Repo

SUMMARY = "config-summary.json"
CACHE = "validate-cache.json"
_ZERO = frozenset("0")


def config_stamp(path: str) -> list[object]:
    """What must not change for a config summary to stay valid."""
    st = os.stat(path)
    return [os.path.abspath(path), st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


def common_dir(cwd: str) -> str | None:
    git_dir = os.environ.get("GIT_DIR")
    if git_dir:
        git_dir = os.path.join(cwd, git_dir)
    else:
        dotgit = os.path.join(cwd, ".git")
        if os.path.isdir(dotgit):
            git_dir = dotgit
        elif os.path.isfile(dotgit):  # a linked worktree: "gitdir: <path>"
            with open(dotgit) as fh:
                first = fh.readline().strip()
            if not first.startswith("gitdir: "):
                return None
            git_dir = os.path.join(cwd, first[len("gitdir: "):])
        else:
            return None
    try:
        with open(os.path.join(git_dir, "commondir")) as fh:
            return os.path.normpath(os.path.join(git_dir, fh.read().strip()))
    except OSError:
        return os.path.normpath(git_dir)


def _config_path(cwd: str) -> str | None:
    override = os.environ.get("TAYDASH_CONFIG")
    if override:
        return override
    for name in (".taydash.toml", "pyproject.toml"):
        path = os.path.join(cwd, name)
        if os.path.isfile(path):
            return path
    return None


class _Strict:
    """What the C scanner reads off a decoder: plain JSON only (NaN and Infinity refused)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> object:
    """``json.loads(text)`` through the C scanner ``json`` itself uses, without importing
    ``json``: that package brings ``re``, ``enum`` and ``collections``, about 15 ms of every
    push (as much again as the interpreter's start). Anything but one JSON value raises
    ValueError."""
    try:
        import _json
    except ImportError:  # a Python without the accelerator: the package, at its cost
        import json

        return json.loads(text)
    blank = " \t\n\r"
    start = len(text) - len(text.lstrip(blank))
    try:
        value, end = _json.make_scanner(_Strict())(text, start)  # type: ignore[arg-type]  # reads the attributes only
    except StopIteration:
        raise ValueError("no JSON value") from None
    if text[end:].strip(blank):
        raise ValueError("more than one JSON value")
    return value


def _load(path: str) -> dict[str, object] | None:
    try:
        # O_NOFOLLOW: a state file that is a symlink is ignored (the full path runs).
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            doc = parse_json(fh.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def try_cached(stdin: bytes) -> int | None:
    """Exit 0 with a summary when every pushed commit already passed; None to run the full gate."""
    if os.environ.get("TAYDASH_SKIP"):
        return None
    cwd = os.getcwd()
    common = common_dir(cwd)
    config = _config_path(cwd)
    if common is None or config is None:
        return None
    state = os.path.join(common, "taydash")
    summary = _load(os.path.join(state, SUMMARY))
    try:
        if summary is None or summary.get("stamp") != config_stamp(config):
            return None
    except OSError:
        return None
    validate = summary.get("validate")
    if not isinstance(validate, dict) or not validate.get("cache") or not validate.get("commands"):
        return None
    push = summary.get("push")
    protected = push.get("protected", []) if isinstance(push, dict) else []
    try:
        rows = hook_input.rows(stdin, "pre-push")
    except hook_input.BadLine:
        return None  # the full path says what is wrong with it
    for parts in rows:
        if not parts[2].startswith("refs/heads/") or hook_input.is_zero(parts[1]):
            return None  # tags, deletions: the full path judges them
        if protected and set(parts[3]) != _ZERO:
            import fnmatch

            if any(fnmatch.fnmatchcase(parts[2][len("refs/heads/"):], p) for p in protected):
                return None  # a protected update needs the fast-forward check
    if not rows:
        return None
    cache = _load(os.path.join(state, CACHE)) or {}
    commits = cache.get("commits")
    if not isinstance(commits, dict):
        return None
    prof = validate.get("profile")
    passed = cache.get("passed")
    if not isinstance(prof, str) or not isinstance(passed, dict):
        return None
    for _, oid, _, _ in rows:
        if commits.get(oid) == prof:
            continue  # this very commit passed
        # A new commit whose tree passed (amended message, identical rebase, empty merge).
        tree = tree_of(common, oid)
        if tree is None or tree_key(prof, tree) not in passed:
            return None
    if not os.environ.get("TAYDASH_QUIET"):
        for _, local_oid, remote_ref, remote_oid in rows:
            status = "unchanged" if local_oid == remote_oid else "cached"
            print(f"{remote_ref} {local_oid[:7]}  {status}", file=sys.stderr)
    return 0


def profile(commands: tuple[str, ...], isolate: bool, timeout: float) -> str:
    """Everything besides the tree that can change a verdict, as one hash.

    A tree that passed in the working tree (``isolate = false``, where an
    ignored file may have helped) or with a longer timeout has not passed
    under another setting.
    """
    import hashlib
    import json

    doc = json.dumps({"commands": list(commands), "isolate": isolate, "timeout": timeout},
                     sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def tree_key(prof: str, tree: str) -> str:
    """The validation cache's key for a tree (:func:`gate.cache.key` is this one): plain text,
    so the fast path needs no hashlib (a few milliseconds of every push)."""
    return f"{prof}:{tree}"


def tree_of(common: str, oid: str) -> str | None:
    """The tree of commit ``oid``: one zlib read of its loose object, else one ``git`` call."""
    if not all(c in "0123456789abcdef" for c in oid) or len(oid) not in (40, 64):
        return None
    path = os.path.join(common, "objects", oid[:2], oid[2:])
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            import zlib

            # The header and the tree line are in the first few hundred bytes.
            head = zlib.decompressobj().decompress(fh.read(4096), 512)
    except (OSError, ValueError):
        return _tree_by_git(oid)  # packed (or unreadable): ask git once
    kind, _, body = head.partition(b"\0")
    if not kind.startswith(b"commit ") or not body.startswith(b"tree "):
        return None
    tree = body[5:].split(b"\n", 1)[0].decode("ascii", "replace")
    return tree if len(tree) == len(oid) else None


def _tree_by_git(oid: str) -> str | None:
    import subprocess

    try:
        res = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{oid}^{{tree}}"],
                             capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    tree = res.stdout.decode("ascii", "replace").strip()
    return tree if res.returncode == 0 and len(tree) == len(oid) else None


def write_summary(repo: Repo, cfg: Config) -> None:
    """Leave the fast path what it needs, for this exact config file (called by the full
    pre-push path: loading a configuration never writes)."""
    path = cfg.source
    if path is None or repo.toplevel is None:
        return
    v = cfg.validate
    summary: dict[str, object] = {
        "validate": {"profile": profile(v.commands, v.isolate, v.timeout), "cache": v.cache,
                     "commands": bool(v.commands)} if v else None,
        "push": {"protected": list(cfg.push.protected)} if cfg.push else None,
        "tags": cfg.tags is not None,
        "snapshots": cfg.snapshots is not None,
    }
    # Only an optimisation: a read-only git dir (or a planted symlink) means the full path runs.
    import contextlib
    import json

    from taydash_hooks.errors import TaydashError
    from taydash_hooks.statefiles import write_private

    state = str(repo.state_dir)
    doc = {"stamp": config_stamp(str(path)), **summary}
    if _load(os.path.join(state, SUMMARY)) == json.loads(json.dumps(doc)):
        return
    from pathlib import Path

    with contextlib.suppress(OSError, TaydashError):
        write_private(Path(state) / SUMMARY, json.dumps(doc).encode())
