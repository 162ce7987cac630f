"""The command line skeleton: every SPEC command, exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testing.gitrepo import Repos, taydash

SPEC_COMMANDS = [
    ["install"], ["uninstall"], ["hook", "pre-push"], ["hook", "reference-transaction"],
    ["hook", "pre-receive"], ["validate"], ["check-tags"], ["snapshot"], ["backups", "list"],
    ["backups", "show"], ["backups", "verify"], ["backups", "prune"], ["backups", "delete"],
    ["backups", "resign"],
    ["restore", "db"], ["restore", "vm"],
    ["restore", "config"], ["restore", "git"], ["objects", "versions"], ["objects", "get"],
    ["objects", "promote"], ["backup"], ["release"], ["verify"], ["drill"], ["health"],
    ["doctor"], ["demo"],
]


def test_every_spec_command_has_help(tmp_path: Path) -> None:
    top = taydash("--help", cwd=tmp_path)
    assert top.returncode == 0
    for cmd in SPEC_COMMANDS:
        assert cmd[0] in top.stdout
        proc = taydash(*cmd, "--help", cwd=tmp_path)
        assert proc.returncode == 0, (cmd, proc.stderr)
        assert "Usage:" in proc.stdout
        assert "-C DIR" in proc.stdout


def test_json_flag_where_spec_says(tmp_path: Path) -> None:
    for cmd in (["check-tags"], ["backups", "list"], ["backups", "show"], ["backups", "verify"],
                ["verify"], ["drill"], ["health"]):
        assert "--json" in taydash(*cmd, "--help", cwd=tmp_path).stdout, cmd


def test_not_a_repository_is_one_sentence_exit_2(tmp_path: Path) -> None:
    proc = taydash("validate", cwd=tmp_path)
    assert proc.returncode == 2
    assert "not a git repository" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dash_c_before_and_after_command(repos: Repos, tmp_path: Path) -> None:
    work = repos.work
    for argv in (["-C", str(work), "validate"], ["validate", "-C", str(work)]):
        proc = taydash(*argv, cwd=tmp_path)
        # The repository was found (no config → usage error about [validate], not "not a repo").
        assert proc.returncode == 2 and "[validate]" in proc.stderr, proc.stderr


def test_bad_option_is_usage_error(tmp_path: Path) -> None:
    proc = taydash("drill", "--last", "zero", cwd=tmp_path)
    assert proc.returncode == 2


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    code = ("import sys, runpy; sys.argv=['taydash','--help']\n"
            "try:\n    runpy.run_module('taydash_hooks', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print([m for m in ('git', 'minio', 'gnupg') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=os.environ, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_hook_entry_does_not_import_click(repos: Repos) -> None:
    work = repos.work
    code = ("import sys\nfrom taydash_hooks import hook_main\n"
            "sys.stdin = open('/dev/null')\n"
            "try:\n    hook_main.main(['pre-push', 'origin', 'x'])\n"
            "except SystemExit as e: print('exit', e.code)\n"
            "print(sorted(m for m in ('click', 'git', 'minio', 'gnupg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=work, check=True).stdout
    assert out.splitlines()[-2:] == ["exit 0", "[]"]


def test_every_command_has_an_example_and_every_option_a_help_text() -> None:
    import click

    from taydash_hooks.cli import cli

    def walk(cmd: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
        found = [(path, cmd)]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                found += walk(sub, [*path, name])
        return found

    commands = walk(cli, [])
    assert len(commands) > 25
    for path, cmd in commands:
        if (path and not isinstance(cmd, click.Group)) or path in (["backups"], ["restore"],
                                                                ["objects"], ["hook"]):
            assert "Example:" in (cmd.help or ""), path
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, (path, param.name)


def test_taydash_hook_help_is_usage_not_an_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "taydash_hooks.hooks.main", "--help"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("usage:")
