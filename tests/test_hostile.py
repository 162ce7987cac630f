"""Hostile input and killed processes: a clear answer, a defined exit code, nothing left behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from testing.gitrepo import Repos, run, taydash

EVIL_REGEX = "regex:v((a+)+|[0-9.]+)"
LIGHT_TAGS = 'require_annotated = false\nrequire_signed = false\ncheck_at_creation = false\n'


# --- names chosen by the pusher -------------------------------------------------------------


def test_catastrophic_regex_cannot_hang_the_server(repos: Repos) -> None:
    remote = repos.remote
    (remote / "taydash.toml").write_text(f'[tags]\nnaming = "{EVIL_REGEX}"\n{LIGHT_TAGS}')
    assert taydash("install", "--server", cwd=remote).returncode == 0
    # Python's re takes 2^100 steps on this one; it is well under the length limit.
    evil = "v" + "a" * 100 + "!"
    repos.git("tag", evil)
    proc = repos.push("--no-verify", "origin", f"refs/tags/{evil}", timeout=30)
    assert proc.returncode != 0, proc.stderr
    assert "does not match tags.naming regex" in proc.stderr
    assert repos.remote_ref(f"refs/tags/{evil}") is None
    # And locally, check-tags over every tag answers too.
    repos.configure(f'[tags]\nnaming = "{EVIL_REGEX}"\n{LIGHT_TAGS}')
    proc = taydash("check-tags", "--all", cwd=repos.work, timeout=30)
    assert proc.returncode == 1 and "does not match" in proc.stdout
    # A good name still passes.
    repos.git("tag", "v1.2.3")
    assert repos.push("--no-verify", "origin", "refs/tags/v1.2.3", timeout=30).returncode == 0


def test_a_release_tag_name_has_a_maximum_length(repos: Repos) -> None:
    remote = repos.remote
    (remote / "taydash.toml").write_text(f'[tags]\n{LIGHT_TAGS}')
    assert taydash("install", "--server", cwd=remote).returncode == 0
    long_name = "v0.1.0-milestone-" + "a" * 200  # git and the convention alone accept it
    repos.git("tag", long_name)
    proc = repos.push("--no-verify", "origin", f"refs/tags/{long_name}", timeout=30)
    assert proc.returncode != 0 and "release tag names have at most 128" in proc.stderr
    assert repos.remote_ref(f"refs/tags/{long_name}") is None


@pytest.mark.parametrize("pattern, fragment", [
    (r"regex:v(a)\\1", "invalid escape sequence"),
    ("regex:v(?=1)", "linear time"),
])
def test_patterns_re2_cannot_run_are_config_errors(repos: Repos, pattern: str, fragment: str) -> None:
    repos.configure(f'[tags]\nnaming = "{pattern}"\n')
    proc = taydash("check-tags", "--all", cwd=repos.work)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    assert "tags.naming" in proc.stderr or "naming" in proc.stderr
    assert "E0000" not in proc.stderr  # RE2's own log stays quiet


def test_snapshot_tag_names_exactly_one_tag(repos: Repos, tmp_path: Path) -> None:
    repos.configure(f'[snapshots]\nstore = "file://{tmp_path / "store"}"\n'
                    '[snapshots.config]\npaths = ["README"]\nrecipients = ["nobody@example.test"]\n')
    env = {**os.environ, "TAYDASH_SKIP": "snapshot"}
    repos.git("tag", "v1x/rc", env=env)
    repos.git("tag", "v2", env=env)
    for name in ("v*", "v1x", "v?", "[v]2"):
        proc = taydash("snapshot", name, cwd=repos.work)
        assert proc.returncode == 2 and "names exactly one tag" in proc.stderr, (name, proc.stderr)
    assert not (tmp_path / "store" / "manifests").exists()


def test_a_tag_too_long_for_store_keys_is_refused_before_anything(repos: Repos,
                                                                  tmp_path: Path) -> None:
    store = tmp_path / "store"
    repos.configure(f'[snapshots]\nstore = "file://{store}"\n'
                    '[snapshots.config]\npaths = ["README"]\nrecipients = ["nobody@example.test"]\n')
    name = "v0.1.0-milestone-" + "a" * 202  # 219 characters
    repos.git("tag", name, env={**os.environ, "TAYDASH_SKIP": "snapshot"})
    proc = taydash("snapshot", name, cwd=repos.work)
    assert proc.returncode == 2, proc.stderr
    assert "too long to back up" in proc.stderr and "Traceback" not in proc.stderr
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]


def test_background_log_of_a_long_tag_name_fits_a_file_name(repos: Repos, tmp_path: Path) -> None:
    from taydash_hooks import git as gitmod
    from taydash_hooks.snapshots.triggers import start_background

    name = "v" + "x" * 240
    repos.git("tag", name)
    log = start_background(gitmod.find_repo(repos.work), name)
    assert len(log.name.encode()) <= 255 and log.exists()


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("toml, fragment", [
    ("[validate]\nx = " + "[" * 1000 + "]" * 1000 + "\n", "nests tables or arrays too deeply"),
    ('[snapshots]\n[snapshots.s3]\nobject_lock_days = 9999999999\n',
     "object_lock_days: expected an integer number of days from 0 to 36500"),
    ('[snapshots]\n[snapshots.postgres]\nport = 70000\n', "expected a TCP port from 1 to 65535"),
    ('[validate]\ntimeout = nan\n', "expected a number of seconds greater than 0 to 86400"),
    ('[validate]\ntimeout = inf\n', "greater than 0 to 86400"),
    ('[health]\nlarge_blob_mib = -1\n', "a number of MiB greater than 0"),
])
def test_numeric_ranges_and_unreadable_config_are_exit_2(repos: Repos, toml: str,
                                                          fragment: str) -> None:
    repos.write(".taydash.toml", toml)
    proc = taydash("health", cwd=repos.work)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


def test_config_that_is_not_utf8_is_exit_2(repos: Repos) -> None:
    (repos.work / ".taydash.toml").write_bytes(b"[validate]\ncommands = ['\xff\xfe']\n")
    proc = taydash("health", cwd=repos.work)
    assert proc.returncode == 2 and "not UTF-8" in proc.stderr


# --- caches and state -------------------------------------------------------------------------


def test_the_validation_cache_covers_the_isolate_mode(repos: Repos, tmp_path: Path) -> None:
    repos.write(".gitignore", "ok\n")
    repos.write("check.sh", '#!/bin/sh\ntest -f ok || { echo "ok missing"; exit 1; }\n', 0o755)
    repos.commit("check needs an ignored file")
    repos.install()
    repos.write("ok", "")  # ignored: only the working tree has it
    loose, strict = tmp_path / "loose.toml", tmp_path / "strict.toml"
    loose.write_text('[validate]\ncommands = ["./check.sh"]\nisolate = false\n')
    strict.write_text('[validate]\ncommands = ["./check.sh"]\nisolate = true\n')
    proc = taydash("validate", cwd=repos.work, env={**os.environ, "TAYDASH_CONFIG": str(loose)})
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "TAYDASH_CONFIG": str(strict)}
    proc = taydash("validate", cwd=repos.work, env=env)
    assert proc.returncode == 1 and "FAILED: ./check.sh exit 1" in proc.stderr, proc.stderr
    proc = repos.push("origin", "HEAD:refs/heads/feature", env=env)
    assert proc.returncode == 1 and "FAILED: ./check.sh exit 1" in proc.stderr, proc.stderr


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return victim


def test_state_files_never_follow_a_planted_symlink(repos: Repos, tmp_path: Path) -> None:
    repos.write("check.sh", "#!/bin/sh\necho validated\n", 0o755)
    repos.configure(f'[validate]\ncommands = ["./check.sh"]\ncache = false\n'
                    f'[snapshots]\nstore = "file://{tmp_path / "store"}"\n'
                    '[snapshots.config]\npaths = ["README"]\nrecipients = ["nobody@example.test"]\n')
    state = repos.work / ".git" / "taydash"
    victim = _victim(tmp_path)
    # validate: its log of the first command.
    (state / "logs").mkdir(parents=True)
    head = repos.head()
    (state / "logs" / f"validate-{head[:12]}-1.log").symlink_to(victim)
    proc = taydash("validate", cwd=repos.work)
    assert proc.returncode == 3 and "symlink" in proc.stderr, proc.stderr
    assert victim.read_text() == "precious\n"
    # snapshot: its lock file.
    repos.git("tag", "v0.1.0", env={**os.environ, "TAYDASH_SKIP": "snapshot"})
    (state / "locks").mkdir(parents=True)
    lock = state / "locks" / f"snapshot-{hashlib.sha256(b'v0.1.0').hexdigest()[:16]}.lock"
    lock.symlink_to(victim)
    proc = taydash("snapshot", "v0.1.0", cwd=repos.work)
    assert proc.returncode == 3 and "symlink" in proc.stderr, proc.stderr
    assert victim.read_text() == "precious\n"
    # A state folder that is a symlink is refused as a whole.
    lock.unlink()
    (state / "locks").rmdir()
    (state / "locks").symlink_to(tmp_path)
    proc = taydash("snapshot", "v0.1.0", cwd=repos.work)
    assert proc.returncode == 3 and "is a symlink or not a folder" in proc.stderr


# --- killed with SIGKILL ----------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_sigkill_of_the_hook_kills_validation_and_the_next_run_cleans_up(repos: Repos,
                                                                         tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = (f"#!/bin/sh\necho $PPID > {marks}/hook\nsleep 300 &\necho $! > {marks}/sleep\n"
              f"test -f {marks}/release || wait\n")
    repos.write("check.sh", script, 0o755)
    repos.configure('[validate]\ncommands = ["./check.sh"]\ncache = false\n')
    repos.install()
    push = subprocess.Popen(["git", "push", "origin", "HEAD:refs/heads/feature"], cwd=repos.work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (marks / "sleep").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    hook = int((marks / "hook").read_text())
    sleeper = int((marks / "sleep").read_text())
    os.kill(hook, signal.SIGKILL)  # no finally, no handler: the kernel just ends it
    push.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper), "the validation command outlived the killed hook"
    listed = run("git", "worktree", "list", "--porcelain", cwd=repos.work).stdout
    left = [line.split(" ", 1)[1] for line in listed.splitlines()
            if line.startswith("worktree ") and "taydash-validate-" in line]
    assert len(left) == 1  # what a SIGKILL leaves: a registered worktree
    (marks / "release").write_text("")
    proc = taydash("validate", cwd=repos.work)
    assert proc.returncode == 0, proc.stderr
    assert "left by a validation run that was killed" in proc.stderr
    listed = run("git", "worktree", "list", "--porcelain", cwd=repos.work).stdout
    assert "taydash-validate-" not in listed
    assert not Path(left[0]).parent.exists()


def test_the_sweep_leaves_other_repositories_runs_alone(repos: Repos, tmp_path: Path) -> None:
    # A killed run's temp folder of another repository (its owner file names that one).
    import tempfile

    dead = subprocess.Popen(["true"])
    dead.wait()
    other = Path(tempfile.mkdtemp(prefix="taydash-validate-"))
    (other / "owner").write_text(f"{dead.pid}\n/somewhere/else/.git\n")
    mine = Path(tempfile.mkdtemp(prefix="taydash-validate-"))
    (mine / "owner").write_text(f"{dead.pid}\n{(repos.work / '.git').resolve()}\n")
    repos.write("check.sh", "#!/bin/sh\nexit 0\n", 0o755)
    repos.configure('[validate]\ncommands = ["./check.sh"]\ncache = false\n')
    try:
        proc = taydash("validate", cwd=repos.work)
        assert proc.returncode == 0, proc.stderr
        assert not mine.exists() and other.exists()
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)
        shutil.rmtree(mine, ignore_errors=True)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x"])
def test_restore_git_of_a_path_outside_the_repository_is_a_usage_error(repos: Repos,
                                                                       path: str) -> None:
    repos.write("a/file.txt", "x\n")
    repos.commit("a file")
    repos.git("tag", "-a", "-m", "v0.1.0", "v0.1.0", env={**os.environ, "TAYDASH_SKIP": "tags"})
    proc = taydash("restore", "git", "v0.1.0", "--path", path, cwd=repos.work)
    assert proc.returncode == 2, proc.stderr  # the command line, not the environment
    assert f"--path {path} is outside the repository" in proc.stderr
