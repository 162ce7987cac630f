"""The shape of the package: one entry and its exit codes, no import cycles, light hook paths."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing import keys
from testing.gitrepo import ROOT, Repos, run

PACKAGE = ROOT / "taydash_hooks"
HEAVY = ("click", "git", "minio", "gnupg")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _import_graph() -> dict[str, set[str]]:
    """Every import of a package module by another, at module level or inside a function."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                           else node.module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                # A module's own parent packages load first by definition: not a cycle.
                if t in mods and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_the_package() -> None:
    graph = _import_graph()
    assert "taydash_hooks.hooks.pre_push" in graph and graph["taydash_hooks.cli"]  # the walk saw imports
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_code_does_not_import_click() -> None:
    for name, path in _modules().items():
        if name == "taydash_hooks.cli":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "click" for a in node.names), name
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "click", name


def test_store_is_storage_only() -> None:
    graph = _import_graph()
    for name, deps in graph.items():
        if name.startswith("taydash_hooks.store"):
            assert not any(_under(d, DOMAIN) for d in deps), (name, deps)


ADAPTERS = ("taydash_hooks.hooks", "taydash_hooks.commands")
# The only modules that may import an adapter: the adapters themselves, the click wiring,
# the one entry, and the two ``python -m`` modules (the old shims' and the CLI's).
ABOVE_ADAPTERS = ("taydash_hooks.cli", "taydash_hooks.entry", "taydash_hooks.hook_main",
                  "taydash_hooks.__main__")
DOMAIN = ("taydash_hooks.config", "taydash_hooks.git", "taydash_hooks.gate",
          "taydash_hooks.tags", "taydash_hooks.snapshots", "taydash_hooks.lifecycle",
          "taydash_hooks.updates", "taydash_hooks.results", *ADAPTERS)


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of an adapter (a hook or a command) from below the adapters."""
    return sorted((name, dep) for name, deps in graph.items() for dep in deps
                  if _under(dep, ADAPTERS) and not _under(name, ADAPTERS)
                  and name not in ABOVE_ADAPTERS)


def test_hooks_and_commands_are_leaf_adapters() -> None:
    assert _upward(_import_graph()) == []


def test_commands_import_core_never_each_other() -> None:
    graph = _import_graph()
    wrong = sorted((name, dep) for name, deps in graph.items() for dep in deps
                   if name.startswith("taydash_hooks.commands.")
                   and dep.startswith("taydash_hooks.commands."))
    assert wrong == []


def test_the_layout_rules_see_an_upward_import(tmp_path: Path) -> None:
    graph = {"taydash_hooks.gate.push": {"taydash_hooks.hooks.report"},
             "taydash_hooks.cli": {"taydash_hooks.commands.verify"}}
    assert _upward(graph) == [("taydash_hooks.gate.push", "taydash_hooks.hooks.report")]


def test_every_snapshot_kind_is_registered_once_under_its_config_table() -> None:
    from taydash_hooks.config import KINDS
    from taydash_hooks.snapshots import kinds

    assert tuple(kinds.registry()) == KINDS
    try:
        kinds.register(kinds.get("postgres"))
    except AssertionError as exc:
        assert "registered twice" in str(exc)
    else:
        raise AssertionError("a duplicate registration went through")


def test_asking_for_one_kind_loads_only_its_module() -> None:
    probe = ("import sys\nfrom taydash_hooks.snapshots import kinds\n"
             "kinds.get('postgres')\n"
             "print(sorted(m.rsplit('.', 1)[-1] for m in sys.modules\n"
             "             if m.startswith('taydash_hooks.snapshots.kinds.')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    loaded = proc.stdout.strip()
    assert "'postgres'" in loaded and "victoriametrics" not in loaded and "bundle" not in loaded


def _imports_after(code: str, cwd: Path, stdin: bytes = b"") -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], input=stdin, capture_output=True,
                          cwd=cwd, check=False)
    return proc.stdout.decode().strip().splitlines()


def test_every_hook_path_imports_no_click_minio_gitpython_or_gnupg(repos: Repos) -> None:
    repos.configure('[push]\nprotected = ["main"]\n[tags]\nrequire_signed = false\n')
    head = repos.head()
    for hook, stdin in (("pre-receive", f"{head} {head} refs/heads/main\n"),
                        ("reference-transaction", f"{'0' * 40} {head} refs/tags/v1\n")):
        args = [hook] if hook == "pre-receive" else [hook, "prepared"]
        code = ("from taydash_hooks.hooks import main\n"
                f"try:\n    main.main({args!r})\nexcept SystemExit as e:\n    print('exit', e.code)")
        out = _imports_after(code, repos.work, stdin.encode())
        assert out[-2:] == ["exit 0", "[]"], (hook, out)


def test_old_shims_module_path_still_runs(repos: Repos) -> None:
    # Shims installed before the split call `python -m taydash_hooks.hook_main`.
    proc = subprocess.run([sys.executable, "-m", "taydash_hooks.hook_main", "pre-push", "origin", "x"],
                          input=b"", capture_output=True, cwd=repos.work, check=False)
    assert proc.returncode == 0, proc.stderr
    usage = subprocess.run([sys.executable, "-m", "taydash_hooks.hook_main", "nonsense"],
                           capture_output=True, cwd=repos.work, check=False)
    assert usage.returncode == 2 and b"usage:" in usage.stderr


def _crash(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A genuine unexpected exception inside the one entry (the handler is the unit under test).
    code = "from taydash_hooks import entry\nentry.main(lambda: {}['no such key'])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env=env, check=False)


def test_a_crash_exits_3_with_one_line_and_a_traceback_log(repos: Repos) -> None:
    proc = _crash(repos.work, dict(os.environ))
    assert proc.returncode == 3  # never 1: that is "refused by policy"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taydash: unexpected error (KeyError")
    assert "Traceback" not in proc.stderr
    logs = sorted((repos.work / ".git" / "taydash" / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "KeyError: 'no such key'" in text
    assert logs[0].stat().st_mode & 0o077 == 0


def test_a_crash_outside_a_repository_logs_under_the_state_home(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = _crash(tmp_path, env)
    assert proc.returncode == 3
    assert list((tmp_path / "state" / "taydash").glob("crash-*.log"))


def test_known_failure_and_interrupt_codes_through_the_entry(tmp_path: Path) -> None:
    code = ("import os, signal\nfrom taydash_hooks import entry, errors\n"
            "def work():\n"
            "    if os.environ['CASE'] == 'refused':\n        raise errors.refused('no.')\n"
            "    os.kill(os.getpid(), getattr(signal, os.environ['CASE']))\n"
            "    return 0\n"
            "entry.main(work)")
    codes = {}
    for case in ("refused", "SIGTERM", "SIGHUP", "SIGINT"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=tmp_path, env={**os.environ, "CASE": case}, check=False)
        codes[case] = (proc.returncode, proc.stderr.strip())
    assert codes["refused"] == (1, "taydash: no.")
    for sig in ("SIGTERM", "SIGHUP", "SIGINT"):
        assert codes[sig] == (130, "taydash: interrupted"), sig


@pytest.mark.slow  # starts its own services (or builds a venv)
def test_sigterm_during_backup_after_the_tag_rolls_it_back(flow_env: tuple[Repos, Path]) -> None:
    repos, store = flow_env
    proc = subprocess.Popen([sys.executable, "-m", "taydash_hooks", "backup", "v0.1.0"],
                            cwd=repos.work, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    manifest = store / "manifests" / "v0.1.0.json"
    deadline = time.monotonic() + 120
    # The tag exists and its snapshot is written: backup now waits at "Push HEAD ...?".
    while not manifest.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert manifest.exists() and repos.head("refs/tags/v0.1.0")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rolled back: tag v0.1.0" in err and "interrupted" in err
    assert run("git", "tag", "--list", cwd=repos.work).stdout.strip() == ""
    assert not manifest.exists()
    assert repos.remote_ref("refs/tags/v0.1.0") is None


@pytest.fixture
def flow_env(repos: Repos, gnupghome: keys.Keyring, tmp_path: Path) -> tuple[Repos, Path]:
    """A repository that signs with a real key and snapshots an encrypted config bundle."""
    fpr = gnupghome.keys["trusted"].fingerprint
    store = tmp_path / "store"
    repos.git("config", "user.signingkey", fpr)
    repos.write("infra/app.env", "SECRET=1\n")
    repos.configure(f'[snapshots]\nstore = "file://{store}"\n'
                    f'[snapshots.config]\npaths = ["infra"]\nrecipients = ["{fpr}"]\n')
    repos.install()
    assert repos.push("origin", "main").returncode == 0
    return repos, store


@pytest.mark.slow  # starts its own services (or builds a venv)
def test_the_background_snapshot_runs_through_the_entry(repos: Repos, tmp_path: Path) -> None:
    # A pg_dump side that hangs (behind an exec prefix), so the job is mid-snapshot when the
    # SIGTERM arrives: the entry turns it into 130 after the rollback, and the outcome is
    # recorded for `taydash health` (before, the job had no signal handlers at all).
    marker = f"{time.monotonic_ns() % 1000}.{os.getpid()}"
    store = tmp_path / "store"
    repos.configure(f'[snapshots]\nstore = "file://{store}"\n[snapshots.postgres]\n'
                    f'exec = ["sh", "-c", \'sleep 40{marker}; exec "$@"\', "slow"]\n')
    assert repos.git("tag", "-a", "-m", "m", "v1.0.0",
                     env={**os.environ, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    log = tmp_path / "job.log"
    proc = subprocess.Popen([sys.executable, "-m", "taydash_hooks.lifecycle.job", str(log),
                             "v1.0.0"], cwd=repos.work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", "--", f"sleep 40{marker}"], capture_output=True,
                         timeout=30).returncode != 0:
        assert time.monotonic() < deadline, "the job's command never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    status = json.loads((repos.work / ".git" / "taydash" / "snapshot-status.json").read_text())
    assert status["ok"] is False and "interrupted" in status["message"]
    assert not (store / "manifests" / "v1.0.0.json").exists()
    assert subprocess.run(["pgrep", "-f", "--", f"sleep 40{marker}"], capture_output=True,
                          timeout=30).returncode == 1  # nothing left running


KIND_NAMES = frozenset({"postgres", "victoriametrics", "config"})
KIND_TABLES = frozenset({"postgres", "victoriametrics"})  # `.config` is too common a name


def _kind_branches(tree: ast.AST) -> list[int]:
    """Lines that decide on a kind by name: a comparison with a kind's name, or a read of a
    kind's own config table (``cfg.snapshots.postgres``)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in KIND_NAMES for o in operands):
                lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr in KIND_TABLES:
            lines.append(node.lineno)
    return lines


def test_only_the_kinds_themselves_branch_on_a_kind_name() -> None:
    wrong = {}
    for name, path in _modules().items():
        # The kinds own their names; config.py holds the tables' schema (it loads before any
        # kind, on the hook path); the demo and the container emulation name services.
        if name.startswith("taydash_hooks.snapshots.kinds") or name in (
                "taydash_hooks.config", "taydash_hooks.commands.demo",
                "taydash_hooks.containers", "taydash_hooks.sandbox"):
            continue
        lines = _kind_branches(ast.parse(path.read_text()))
        if lines:
            wrong[name] = lines
    assert wrong == {}


def test_the_kind_branch_finder_finds_one() -> None:
    code = 'if kind == "postgres":\n    pass\nx = cfg.snapshots.victoriametrics\n'
    assert _kind_branches(ast.parse(code)) == [1, 3]


def _takers(files: dict[str, str]) -> list[str]:
    """Modules that import ``take`` itself: only the one place that owns what follows a
    snapshot (lifecycle.snapshot) may; every other path goes through it."""
    wrong = []
    for name, text in files.items():
        if name == "taydash_hooks.lifecycle.snapshot" or name.startswith("taydash_hooks.snapshots"):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module in (
                    "taydash_hooks.snapshots.take", "taydash_hooks.snapshots") \
                    and any(a.name == "take" for a in node.names):
                wrong.append(name)
    return wrong


def test_every_snapshot_goes_through_the_one_place_that_follows_it() -> None:
    files = {name: path.read_text() for name, path in _modules().items()}
    assert _takers(files) == []
    # And inside snapshots/, take is called only by its own module.
    callers = [name for name, text in files.items() if name.startswith("taydash_hooks.snapshots")
               and name != "taydash_hooks.snapshots.take" and "take(repo" in text]
    assert callers == []


def test_the_take_rule_sees_a_caller_of_its_own() -> None:
    code = "from taydash_hooks.snapshots.take import take, tag_facts\n"
    assert _takers({"taydash_hooks.commands.snapshot": code,
                    "taydash_hooks.lifecycle.snapshot": code}) == ["taydash_hooks.commands.snapshot"]


def test_restore_options_are_named_never_placed() -> None:
    """Four flags in a row (with_roles, allow_privileged_roles, trust_unsigned_roles, ...)
    swap silently when passed by position: every restore option is keyword-only."""
    import inspect

    from taydash_hooks.commands import restore as command
    from taydash_hooks.snapshots.kinds.base import RestoreJob
    from taydash_hooks.snapshots.kinds.postgres import PgRestoreOptions
    from taydash_hooks.snapshots.kinds.postgres import restore as pg_restore

    with pytest.raises(TypeError):
        PgRestoreOptions("db", (None, None, None), True)  # type: ignore[misc]
    fields = {f.name: f for f in __import__("dataclasses").fields(RestoreJob)}
    assert fields["signed"].kw_only and fields["options"].kw_only
    for func, first_option in ((pg_restore.restore, "roles"), (command.restore, "options")):
        params = inspect.signature(func).parameters
        assert params[first_option].kind is inspect.Parameter.KEYWORD_ONLY, func
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY
                   for name, p in params.items() if list(params).index(name)
                   >= list(params).index(first_option))


# An argv that starts with gpg or gpgv (a list, or the first argument of run/popen), or the
# variables that name the programs: only the GnuPG client may build them.
_GPG_ARGV = re.compile(r"""(\[\s*|(run|popen)\(\s*)["']gpgv?["']|TAYDASH_GPGV?\b""")


def _gpg_argv_outside_the_client(files: dict[str, str]) -> list[str]:
    return sorted(name for name, text in files.items()
                  if name != "taydash_hooks.gnupg" and _GPG_ARGV.search(text))


def test_no_gpg_argv_outside_the_gnupg_client() -> None:
    """One client builds every gpg and gpgv argv (TAYDASH_GPG and the local-keyring-only
    flags everywhere); a second place would forget one."""
    files = {name: path.read_text() for name, path in _modules().items()}
    assert _gpg_argv_outside_the_client(files) == []


def test_the_gpg_rule_sees_an_argv_of_its_own() -> None:
    for code in ('process.run(["gpg", "--list-keys"], timeout=1)', 'run("gpgv", "x")',
                 'os.environ.get("TAYDASH_GPG", "gpg")'):
        assert _gpg_argv_outside_the_client({"taydash_hooks.commands.doctor": code}) == [
            "taydash_hooks.commands.doctor"], code
    assert _gpg_argv_outside_the_client({"taydash_hooks.x": 'tool_check("gpg", "gnupg")'}) == []


def test_a_new_kind_is_wired_in_the_places_the_kinds_docstring_names() -> None:
    """The registry, the configuration and the CLI agree on the kinds (places 2 to 4 of
    `taydash_hooks/snapshots/kinds/__init__.py`; 5 is the conformance suite's own check)."""
    import dataclasses

    from taydash_hooks import cli, config
    from taydash_hooks.snapshots import kinds

    assert tuple(kinds._MODULES) == config.KINDS
    tables = {f.name for f in dataclasses.fields(config.SnapshotsConfig)}
    assert set(config.KINDS) <= tables, set(config.KINDS) - tables
    restore = cli.cli.commands["restore"]  # type: ignore[attr-defined]
    assert len(set(restore.commands) - {"git"}) == len(config.KINDS), restore.commands
    doc = kinds.__doc__ or ""
    for place in ("_MODULES", "KINDS", "SnapshotsConfig", "cli.py", "test_kind_conformance.py"):
        assert place in doc, place
