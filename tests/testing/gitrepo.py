"""A work repository with a bare remote, driven through the real git binary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The pre-commit plugin's validate id, as a repository's .pre-commit-config.yaml names it.
PRE_COMMIT = """repos:
- repo: local
  hooks:
  - id: taydash-validate
    name: taydash validate
    entry: {python} -m taydash_hooks.hooks.main pre-commit validate
    language: system
    stages: [pre-push]
    pass_filenames: false
    always_run: true
    require_serial: true
"""


def run(*argv: str | os.PathLike[str], cwd: Path | None = None, input: str | None = None,
        env: dict[str, str] | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; fail the test on error when ``check``."""
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, input=input, capture_output=True, text=True,
        env=env, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def taydash(*args: str | os.PathLike[str], cwd: Path, input: str | None = None,
            env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a user would (python -m taydash_hooks)."""
    return run(sys.executable, "-m", "taydash_hooks", *args, cwd=cwd, input=input,
               env=env, timeout=timeout, check=False)


class Repos:
    """``work`` (a clone with one commit on main) and its bare ``remote``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.remote = base / "remote.git"
        self.work = base / "work"
        run("git", "init", "-q", "--bare", "-b", "main", self.remote)
        run("git", "init", "-q", "-b", "main", self.work)
        self.git("remote", "add", "origin", str(self.remote))
        self.write("README", "hello\n")
        self.commit("initial")
        self.git("push", "-q", "origin", "main")

    def git(self, *args: str, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run("git", *args, cwd=self.work, check=check, input=input, env=env)

    def remote_git(self, *args: str) -> str:
        return run("git", *args, cwd=self.remote).stdout.strip()

    def write(self, rel: str, text: str, mode: int | None = None) -> Path:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mode is not None:
            path.chmod(mode)
        return path

    def commit(self, message: str, *paths: str) -> str:
        self.git("add", "-A", *paths)
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self, rev: str = "HEAD") -> str:
        return self.git("rev-parse", rev).stdout.strip()

    def remote_ref(self, ref: str) -> str | None:
        proc = run("git", "rev-parse", "--verify", "--quiet", ref, cwd=self.remote, check=False)
        return proc.stdout.strip() or None

    def push(self, *args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run("git", "push", *args, cwd=self.work, check=False, env=env, timeout=timeout)

    def install(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = taydash("install", *args, cwd=self.work)
        assert proc.returncode == 0, proc.stderr
        return proc

    def configure(self, toml: str) -> None:
        """Write and commit .taydash.toml."""
        self.write(".taydash.toml", toml)
        self.commit("configure taydash")
