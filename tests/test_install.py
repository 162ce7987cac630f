"""`taydash install` / `uninstall` against real repositories and real pushes."""

from __future__ import annotations

import os
import re
import sys
import zipfile
from pathlib import Path

import pytest
from testing import wheel as wheel_of_checkout
from testing.gitrepo import PRE_COMMIT, Repos, run, taydash
from testing.skip import require

FOREIGN = (
    "#!/bin/sh\n# someone else's hook\n"
    "cat > \"$MARKER_DIR/stdin\"\necho \"$@\" > \"$MARKER_DIR/args\"\n"
)

VALIDATE_MARK = """
[validate]
commands = ["./ops/mark.sh"]
cache = false
"""


def _mark_script(repos: Repos) -> None:
    repos.write("ops/mark.sh", '#!/bin/sh\necho taydash-ran >> "$MARKER_DIR/taydash"\n', 0o755)


def test_install_writes_shims_and_is_idempotent(repos: Repos) -> None:
    first = repos.install()
    hooks = repos.work / ".git" / "hooks"
    for name in ("pre-push", "reference-transaction"):
        text = (hooks / name).read_text()
        assert "# taydash-hooks shim" in text
        assert sys.executable in text
        assert (hooks / name).stat().st_mode & 0o111
    assert "installed as pre-push" in first.stderr
    before = {p.name: p.read_bytes() for p in hooks.iterdir()}
    again = repos.install()
    assert "already installed" in again.stderr
    assert {p.name: p.read_bytes() for p in hooks.iterdir()} == before


def test_round_trip_restores_foreign_hook_byte_for_byte(repos: Repos) -> None:
    hook = repos.work / ".git" / "hooks" / "pre-push"
    hook.write_bytes(FOREIGN.encode() + b"\x00\xff binary tail")
    hook.chmod(0o751)
    repos.install()
    assert (hook.parent / "pre-push.legacy").read_bytes().endswith(b"\x00\xff binary tail")
    proc = taydash("uninstall", cwd=repos.work)
    assert proc.returncode == 0, proc.stderr
    assert hook.read_bytes() == FOREIGN.encode() + b"\x00\xff binary tail"
    assert hook.stat().st_mode & 0o777 == 0o751
    assert not (hook.parent / "pre-push.legacy").exists()
    assert not (hook.parent / "reference-transaction").exists()


def test_foreign_pre_push_runs_with_same_stdin_and_args(repos: Repos, tmp_path: Path) -> None:
    marker = tmp_path / "markers"
    marker.mkdir()
    hook = repos.work / ".git" / "hooks" / "pre-push"
    hook.write_text(FOREIGN)
    hook.chmod(0o755)
    _mark_script(repos)
    repos.configure(VALIDATE_MARK)
    repos.install()
    new = repos.head()
    proc = repos.push("origin", "main", env=_env(marker))
    assert proc.returncode == 0, proc.stderr
    stdin = (marker / "stdin").read_text()
    assert stdin.split() == ["refs/heads/main", new, "refs/heads/main", stdin.split()[3]]
    assert (marker / "args").read_text().split() == ["origin", str(repos.remote)]
    assert (marker / "taydash").read_text() == "taydash-ran\n"


def test_failing_legacy_hook_blocks_before_taydash(repos: Repos, tmp_path: Path) -> None:
    marker = tmp_path / "m"
    marker.mkdir()
    hook = repos.work / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\nexit 7\n")
    hook.chmod(0o755)
    _mark_script(repos)
    repos.configure(VALIDATE_MARK)
    repos.install()
    proc = repos.push("origin", "main", env=_env(marker))
    assert proc.returncode != 0
    assert not (marker / "taydash").exists()
    assert repos.remote_ref("refs/heads/main") != repos.head()


def _env(marker: Path) -> dict[str, str]:
    import os

    return {**os.environ, "MARKER_DIR": str(marker)}


def test_install_from_linked_worktree_uses_common_hooks(repos: Repos, tmp_path: Path) -> None:
    wt = tmp_path / "linked"
    repos.git("worktree", "add", "-q", str(wt), "-b", "side")
    proc = taydash("install", cwd=wt)
    assert proc.returncode == 0, proc.stderr
    assert (repos.work / ".git" / "hooks" / "pre-push").exists()
    assert not (repos.work / ".git" / "worktrees" / "linked" / "hooks").exists()


def test_hooks_path_outside_repo_needs_force(repos: Repos, tmp_path: Path) -> None:
    shared = tmp_path / "shared-hooks"
    repos.git("config", "core.hooksPath", str(shared))
    proc = taydash("install", cwd=repos.work)
    assert proc.returncode == 2
    assert "core.hooksPath" in proc.stderr and "--force" in proc.stderr
    assert not shared.exists()
    forced = taydash("install", "--force", cwd=repos.work)
    assert forced.returncode == 0, forced.stderr
    assert (shared / "pre-push").exists()


def test_hooks_path_inside_repo_is_fine(repos: Repos) -> None:
    repos.git("config", "core.hooksPath", ".githooks")
    proc = taydash("install", cwd=repos.work)
    assert proc.returncode == 0, proc.stderr
    assert (repos.work / ".githooks" / "reference-transaction").exists()


def test_server_install_into_bare_repo(repos: Repos) -> None:
    proc = taydash("install", "--server", cwd=repos.remote)
    assert proc.returncode == 0, proc.stderr
    assert (repos.remote / "hooks" / "pre-receive").exists()
    assert taydash("install", cwd=repos.remote).returncode == 2
    assert taydash("install", "--server", cwd=repos.work).returncode == 2


PRE_COMMIT_CONFIG = """repos:
- repo: local
  hooks:
  - id: marker
    name: marker
    entry: sh -c 'echo pc-ran >> "$MARKER_DIR/pre-commit"'
    language: system
    stages: [pre-push]
    always_run: true
    pass_filenames: false
"""


def _pre_commit_install(repos: Repos) -> None:
    run(sys.executable, "-m", "pre_commit", "install", "-t", "pre-push", cwd=repos.work)


def _install_both(repos: Repos, order: str) -> None:
    if order == "pre-commit first":
        _pre_commit_install(repos)
        repos.install()
    else:
        repos.install()
        _pre_commit_install(repos)


def _both_run(repos: Repos, tmp_path: Path, order: str) -> None:
    marker = tmp_path / "m"
    marker.mkdir()
    repos.write(".pre-commit-config.yaml", PRE_COMMIT_CONFIG)
    _mark_script(repos)
    repos.configure(VALIDATE_MARK)
    _install_both(repos, order)
    proc = repos.push("origin", "main", env=_env(marker))
    assert proc.returncode == 0, proc.stderr
    assert (marker / "pre-commit").read_text() == "pc-ran\n"
    assert (marker / "taydash").read_text() == "taydash-ran\n"
    assert repos.remote_ref("refs/heads/main") == repos.head()


def test_pre_commit_installed_first_then_taydash(repos: Repos, tmp_path: Path) -> None:
    _both_run(repos, tmp_path, "pre-commit first")


def test_taydash_installed_first_then_pre_commit(repos: Repos, tmp_path: Path) -> None:
    _both_run(repos, tmp_path, "taydash first")
    # Uninstall finds our shim where pre-commit moved it and leaves pre-commit working.
    proc = taydash("uninstall", cwd=repos.work)
    assert proc.returncode == 0, proc.stderr
    hooks = repos.work / ".git" / "hooks"
    assert "pre-commit" in (hooks / "pre-push").read_text()
    assert not (hooks / "pre-push.legacy").exists()


def test_commit_starts_no_python(repos: Repos, tmp_path: Path) -> None:
    strace = require("strace", "apt-get install strace")
    repos.configure('[snapshots]\non_tag = ["v*"]\n[snapshots.config]\n')
    repos.install()
    repos.write("file.txt", "change\n")
    repos.git("add", "file.txt")
    trace = tmp_path / "trace"
    run(strace, "-f", "-qq", "-e", "trace=execve", "-o", trace, "git", "commit", "-q", "-m", "x",
        cwd=repos.work)
    execs = [line for line in trace.read_text().splitlines() if "execve(" in line]
    assert any("reference-transaction" in line for line in execs), execs  # the hook did run
    assert not [line for line in execs if "python" in line.split("execve(", 1)[1].split(",")[0]]


def test_local_tag_starts_python_but_fetched_tags_do_not(repos: Repos, tmp_path: Path) -> None:
    strace = require("strace", "apt-get install strace")
    repos.configure('[snapshots]\non_tag = ["v*"]\n[snapshots.config]\n')
    repos.install()
    trace = tmp_path / "trace"
    run(strace, "-f", "-qq", "-e", "trace=execve", "-o", trace, "git", "tag", "v0.0.1",
        cwd=repos.work)
    assert "python" in trace.read_text()
    # A second clone fetching a new tag from the remote: no Python.
    other = tmp_path / "other"
    run("git", "clone", "-q", str(repos.remote), other)
    run(sys.executable, "-m", "taydash_hooks", "install", cwd=other)
    run("git", "tag", "v0.0.2", cwd=other, env=_env(tmp_path) | {"TAYDASH_SKIP": "snapshot"})
    run("git", "push", "-q", "--no-verify", "origin", "v0.0.2", cwd=other)
    run(strace, "-f", "-qq", "-e", "trace=execve", "-o", trace, "git", "fetch", "-q", "--tags",
        "origin", cwd=repos.work)
    text = trace.read_text()
    assert "reference-transaction" in text
    assert "python" not in text
    assert repos.head("v0.0.2")


def test_reference_transaction_ignores_unknown_states(repos: Repos) -> None:
    import os
    import signal
    import subprocess

    repos.configure('[tags]\nformats = ["ssh"]\n')
    line = f"{'0' * 40} {repos.head()} refs/tags/v0.1.0\n"  # a lightweight release tag
    # A process whose command line reads like `git -c x tag v0.1.0`, standing in for git.
    fake_git = subprocess.Popen(["bash", "-c", 'exec -a git sh -c "sleep 60" tag v0.1.0'],
                                start_new_session=True)  # its sleep is killed with it
    try:
        env = {**os.environ, "TAYDASH_GIT_PID": str(fake_git.pid)}
        results = {}
        for state in ("prepared", "preparing", "aborted", "some-future-state"):
            proc = run(sys.executable, "-m", "taydash_hooks.hooks.main", "reference-transaction",
                       state, cwd=repos.work, input=line, env=env, check=False)
            results[state] = (proc.returncode, "lightweight tag" in proc.stderr)
    finally:
        os.killpg(fake_git.pid, signal.SIGKILL)
        fake_git.wait()
    assert results == {"prepared": (1, True), "preparing": (0, False), "aborted": (0, False),
                       "some-future-state": (0, False)}


def test_no_configuration_means_no_python_and_a_notice_with_verbose(repos: Repos) -> None:
    import os

    repos.install()
    repos.commit("work")
    proc = repos.push("origin", "main", env={**os.environ, "TAYDASH_VERBOSE": "1"})
    assert proc.returncode == 0
    assert proc.stderr.count("no configuration") == 1
    assert repos.remote_ref("refs/heads/main") == repos.head()


def test_code_in_the_pushed_repository_never_runs_inside_the_hook(repos: Repos) -> None:
    # `python -m` puts the current directory (the repository) first on Python's path: a
    # committed json.py or taydash_hooks/ would have run inside every push. The shims start
    # Python isolated (-I), so the repository's files are data, never code.
    marker = repos.base / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(7)\n"
    repos.write("ok.sh", "#!/bin/sh\nexit 0\n", mode=0o755)
    repos.configure('[validate]\ncommands = ["./ok.sh"]\n')
    assert repos.install().returncode == 0  # (`python -m taydash_hooks` itself reads the cwd)
    repos.write("json.py", payload)
    repos.write("taydash_hooks/__init__.py", payload)
    repos.write("taydash_hooks/hooks/__init__.py", payload)
    repos.commit("files named like modules", "ok.sh", "json.py", "taydash_hooks")
    proc = repos.push("origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert "validated" in proc.stderr
    assert not marker.exists()
    proc = repos.push("origin", "HEAD:refs/heads/again")  # the fast path, too
    assert proc.returncode == 0 and "cached" in proc.stderr, proc.stderr
    assert not marker.exists()


def test_a_shim_whose_package_folder_moved_still_finds_the_package(repos: Repos) -> None:
    repos.write("ok.sh", "#!/bin/sh\nexit 0\n", mode=0o755)
    repos.configure('[validate]\ncommands = ["./ok.sh"]\n')
    repos.commit("check", "ok.sh")
    assert repos.install().returncode == 0
    shim = repos.work / ".git" / "hooks" / "pre-push"
    text = shim.read_text()
    assert "INSTALL_ROOT='" in text and "@ROOT@" not in text
    shim.write_text(re.sub(r"INSTALL_ROOT='[^']*'", "INSTALL_ROOT='/nonexistent'", text))
    proc = repos.push("origin", "main")
    assert proc.returncode == 0 and "validated" in proc.stderr, proc.stderr


def _fresh_venv(tmp_path: Path, name: str) -> Path:
    venv = tmp_path / name
    run(sys.executable, "-m", "venv", venv)
    return venv / "bin" / "python"


@pytest.mark.slow  # starts its own services (or builds a venv)
def test_the_wheel_and_a_pinned_git_url_install_into_a_fresh_venv(tmp_path: Path) -> None:
    from testing.gitrepo import ROOT

    # The package's own files, not its dependencies (those come from the package index as
    # usual): what matters is that the hook path and the shims arrive.
    probe = ("from taydash_hooks.install import shim_text\n"
             "import taydash_hooks.hooks.main\n"
             "assert 'run_python' in shim_text('pre-push') and shim_text('pre-receive')\n"
             "print('ok')")
    wheel = wheel_of_checkout.build(tmp_path)
    src = tmp_path / "src"
    # Every module of the source tree is in the wheel (a new sub-package must be listed).
    with zipfile.ZipFile(wheel) as zf:
        packed = {n for n in zf.namelist() if n.endswith(".py")}
    sources = {str(p.relative_to(src)) for p in (src / "taydash_hooks").rglob("*.py")}
    assert sources <= packed, sources - packed
    py = _fresh_venv(tmp_path, "from-wheel")
    run(py, "-m", "pip", "install", "-q", "--no-deps", wheel, timeout=300)
    assert run(py, "-c", probe, cwd=tmp_path).stdout.strip() == "ok"
    commit = run("git", "rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    py = _fresh_venv(tmp_path, "from-git")
    # (PEP 508's `name @ url` needs a host in the URL, which file:// lacks: the egg form.)
    run(py, "-m", "pip", "install", "-q", "--no-deps",
        f"git+file://{ROOT}@{commit}#egg=taydash-hooks", timeout=300)
    assert run(py, "-c", probe, cwd=tmp_path).stdout.strip() == "ok"




@pytest.mark.parametrize("order", ["pre-commit first", "taydash first"])
def test_one_validation_per_push_with_both_flavours_installed(repos: Repos, tmp_path: Path,
                                                               order: str) -> None:
    runs = tmp_path / "runs"
    repos.write(".pre-commit-config.yaml", PRE_COMMIT.format(python=sys.executable))
    repos.write("check.sh", f"#!/bin/sh\necho run >> {runs}\nexit 1\n", 0o755)  # fails
    repos.configure('[validate]\ncommands = ["./check.sh"]\n')
    _install_both(repos, order)
    proc = repos.push("origin", "HEAD:refs/heads/feature")
    assert proc.returncode != 0  # refused, as it must be
    assert runs.read_text().count("run") == 1, proc.stdout + proc.stderr  # not twice
    assert "already judged in this push" in proc.stdout + proc.stderr
    proc = repos.push("origin", "HEAD:refs/heads/feature")  # a new push judges afresh
    assert runs.read_text().count("run") == 2


@pytest.mark.slow  # builds venvs and a wheel
def test_the_readmes_install_lines_run_as_printed_with_debian_pip(tmp_path: Path) -> None:
    """Each line of the README's install block, in a fresh venv of the system's Python (on
    Debian 12: pip 23.0.1). The git host is a dumb-HTTP server of a bare clone here, COMMIT
    this checkout's; the package index is the suite's wheelhouse (the environment points pip
    at it: the lines themselves are as printed)."""
    import http.server
    import shlex
    import subprocess
    import threading

    from testing import docs
    from testing.gitrepo import ROOT

    from taydash_hooks.sandbox import free_port

    python = require("/usr/bin/python3", "apt-get install python3")
    if not wheel_of_checkout.WHEELHOUSE.is_dir():
        pytest.fail("run `make test`: it fills .venv/wheelhouse")
    commit = run("git", "rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    served = tmp_path / "served"
    run("git", "clone", "--quiet", "--bare", ROOT, served / "taydash-hooks.git")
    run("git", "update-server-info", cwd=served / "taydash-hooks.git")
    port = free_port()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lines = [ln for ln in docs.block("install-lines", "sh").splitlines() if ln.strip()]
    assert len(lines) == 3, lines
    try:
        for n, line in enumerate(lines):
            venv = tmp_path / f"venv{n}"
            run(python, "-m", "venv", venv)
            version = run(venv / "bin" / "pip", "--version").stdout
            here = (line.replace("https://YOUR-GIT-HOST/", f"http://127.0.0.1:{port}/")
                    .replace("/path/to/taydash-hooks", str(ROOT)).replace("COMMIT", commit))
            env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
                   "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheel_of_checkout.WHEELHOUSE),
                   "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHON": str(venv / "bin" / "python")}
            env.pop("VIRTUAL_ENV", None)
            proc = subprocess.run(["sh", "-c", here.split("  #")[0]], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, (shlex.quote(here), version, proc.stdout[-2000:],
                                          proc.stderr[-2000:])
            assert "deprecated" not in proc.stderr.lower(), proc.stderr  # no setuptools banner
            assert run(venv / "bin" / "taydash", "--version").returncode == 0
    finally:
        server.shutdown()
        server.server_close()
