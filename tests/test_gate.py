"""The validation gate through real pushes to a bare remote via the installed shim."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing.gitrepo import PRE_COMMIT, ROOT, Repos, run, taydash

CHECK_OK = ('#!/bin/sh\necho "validated $(git rev-parse --short HEAD 2>/dev/null)" '
            '>> "$MARKER_DIR/runs"\ntest -f ok || { echo "ok file missing"; exit 1; }\n')


class Gate:
    def __init__(self, repos: Repos, marker: Path) -> None:
        self.repos = repos
        self.marker = marker
        self.env = {**os.environ, "MARKER_DIR": str(marker)}

    def runs(self) -> int:
        path = self.marker / "runs"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def push(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.repos.push(*args, env=self.env)


@pytest.fixture
def gate(repos: Repos, tmp_path: Path) -> Gate:
    marker = tmp_path / "marker"
    marker.mkdir()
    repos.write("ops/validate.sh", CHECK_OK, 0o755)
    repos.write("ok", "")
    repos.configure('[validate]\ncommands = ["./ops/validate.sh"]\ntimeout = 30\n'
                    '[push]\nprotected = ["main"]\n')
    repos.install()
    return Gate(repos, marker)


def test_passing_validation_goes_through(gate: Gate) -> None:
    proc = gate.push("origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert "refs/heads/main" in proc.stderr and "validated (" in proc.stderr
    assert gate.repos.remote_ref("refs/heads/main") == gate.repos.head()
    assert gate.runs() == 1


def test_failing_validation_blocks_and_remote_is_unchanged(gate: Gate) -> None:
    before = gate.repos.remote_ref("refs/heads/main")
    gate.repos.git("rm", "-q", "ok")
    gate.repos.commit("break it")
    proc = gate.push("origin", "main")
    assert proc.returncode != 0
    err = proc.stderr
    assert "FAILED: ./ops/validate.sh exit 1" in err
    assert "ok file missing" in err  # the tail of the output
    assert "full log:" in err
    assert gate.repos.remote_ref("refs/heads/main") == before


def test_uncommitted_file_does_not_rescue_a_broken_commit(gate: Gate) -> None:
    gate.repos.git("rm", "-q", "ok")
    gate.repos.commit("break it")
    gate.repos.write("ok", "")  # untracked: would make the check pass in the work tree
    status_before = gate.repos.git("status", "--porcelain").stdout
    proc = gate.push("origin", "main")
    assert proc.returncode != 0
    assert gate.repos.git("status", "--porcelain").stdout == status_before
    assert (gate.repos.work / "ok").exists()


def test_uncommitted_deletion_does_not_block_a_good_commit(gate: Gate) -> None:
    (gate.repos.work / "ok").unlink()  # dirty: the work tree would fail
    gate.repos.git("stash", "list")
    proc = gate.push("origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert gate.repos.git("status", "--porcelain").stdout.strip() == "D ok"


def test_two_branches_validated_separately_and_tag_on_same_commit_once(gate: Gate) -> None:
    gate.repos.git("checkout", "-q", "-b", "feature")
    gate.repos.write("f.txt", "feature\n")
    gate.repos.commit("feature work")
    gate.repos.git("checkout", "-q", "main")
    gate.repos.write("m.txt", "main\n")
    gate.repos.commit("main work")
    gate.repos.git("tag", "-a", "-m", "x", "build-1", "main")
    proc = gate.push("origin", "main", "feature", "build-1")
    assert proc.returncode == 0, proc.stderr
    assert gate.runs() == 2  # main+tag share a tree: validated once
    err = proc.stderr
    for ref in ("refs/heads/main", "refs/heads/feature", "refs/tags/build-1"):
        assert ref in err


def test_repush_of_validated_tree_is_cached(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0
    gate.repos.git("checkout", "-q", "-b", "copy")
    proc = gate.push("origin", "copy")
    assert proc.returncode == 0
    assert "cached" in proc.stderr
    assert gate.runs() == 1


def test_corrupt_cache_is_ignored(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0
    (gate.repos.work / ".git" / "taydash" / "validate-cache.json").write_bytes(b"\x00{not json")
    gate.repos.git("checkout", "-q", "-b", "again")
    proc = gate.push("origin", "again")
    assert proc.returncode == 0, proc.stderr
    assert "validated (" in proc.stderr
    assert gate.runs() == 2


def test_cache_is_shared_by_linked_worktrees(gate: Gate, tmp_path: Path) -> None:
    assert gate.push("origin", "main").returncode == 0
    wt = tmp_path / "wt"
    gate.repos.git("worktree", "add", "-q", "-b", "linked", str(wt))
    proc = run("git", "push", "origin", "linked", cwd=wt, env=gate.env, check=False)
    assert proc.returncode == 0 and "cached" in proc.stderr, proc.stderr


def test_force_push_and_deletion_of_main_refused_feature_allowed(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0
    gate.repos.git("checkout", "-q", "-b", "feature")
    gate.repos.commit("feature")
    assert gate.push("origin", "feature").returncode == 0
    main_before = gate.repos.remote_ref("refs/heads/main")
    gate.repos.git("checkout", "-q", "main")
    gate.repos.git("commit", "-q", "--amend", "-m", "rewritten")
    proc = gate.push("--force", "origin", "main")
    assert proc.returncode != 0
    assert "refs/heads/main is protected" in proc.stderr
    proc = gate.push("origin", ":main")
    assert proc.returncode != 0 and "cannot be deleted" in proc.stderr
    assert gate.repos.remote_ref("refs/heads/main") == main_before
    gate.repos.git("checkout", "-q", "feature")
    gate.repos.git("commit", "-q", "--amend", "--allow-empty", "-m", "rewritten feature")
    assert gate.push("--force", "origin", "feature").returncode == 0
    proc = gate.push("origin", ":feature")
    assert proc.returncode == 0, proc.stderr
    assert gate.repos.remote_ref("refs/heads/feature") is None


def test_push_to_url_and_raw_oid(gate: Gate) -> None:
    head = gate.repos.head()
    proc = gate.push(str(gate.repos.remote), f"{head}:refs/heads/by-oid")
    assert proc.returncode == 0, proc.stderr
    assert gate.runs() == 1
    assert gate.repos.remote_ref("refs/heads/by-oid") == head


def test_timeout_blocks_and_leaves_no_process(gate: Gate) -> None:
    gate.repos.write("ops/validate.sh", "#!/bin/sh\nsleep 1000 &\nsleep 1001\n", 0o755)
    gate.repos.configure('[validate]\ncommands = ["./ops/validate.sh"]\ntimeout = 1\n')
    # Without the timeout the push would wait for sleep 1001, past the test's own limit.
    proc = gate.push("origin", "main")
    assert proc.returncode == 1, proc.stderr
    assert "timed out after 1 s" in proc.stderr
    procs = run("ps", "-eo", "args").stdout
    assert "sleep 1000" not in procs and "sleep 1001" not in procs
    assert "taydash-validate-" not in gate.repos.git("worktree", "list").stdout


def test_sigint_leaves_no_worktree(gate: Gate) -> None:
    gate.repos.write("ops/validate.sh",
                     '#!/bin/sh\necho $PPID > "$MARKER_DIR/pid"\nsleep 1002\n', 0o755)
    gate.repos.commit("slow check")
    import subprocess

    push = subprocess.Popen(["git", "push", "origin", "main"], cwd=gate.repos.work,
                            env=gate.env, stderr=subprocess.PIPE, text=True)
    pid_file = gate.marker / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "validation never started"
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGINT)  # the hook's Python process
    _, err = push.communicate(timeout=60)
    assert push.returncode != 0
    assert "interrupted" in err
    assert len(gate.repos.git("worktree", "list").stdout.strip().splitlines()) == 1
    assert "sleep 1002" not in run("ps", "-eo", "args").stdout
    assert gate.repos.git("status", "--porcelain").stdout.strip() == ""


def test_missing_and_non_executable_commands(gate: Gate) -> None:
    gate.repos.configure('[validate]\ncommands = ["./ops/missing.sh"]\n')
    proc = gate.push("origin", "main")
    assert proc.returncode == 1
    assert "does not exist in this commit" in proc.stderr
    gate.repos.write("ops/noexec.sh", "#!/bin/sh\nexit 0\n", 0o644)
    gate.repos.configure('[validate]\ncommands = ["./ops/noexec.sh"]\n')
    proc = gate.push("origin", "main")
    assert proc.returncode == 1 and "not executable" in proc.stderr


def test_command_outside_repo_is_config_error(gate: Gate) -> None:
    gate.repos.configure('[validate]\ncommands = ["../../evil.sh"]\n')
    proc = taydash("validate", cwd=gate.repos.work)
    assert proc.returncode == 2 and "outside the repository" in proc.stderr


def test_no_commands_passes_with_notice(gate: Gate) -> None:
    gate.repos.configure("[validate]\ncommands = []\n")
    proc = gate.push("origin", "main")
    assert proc.returncode == 0 and "no commands configured" in proc.stderr


def test_megabytes_of_binary_output_do_not_break_the_hook(gate: Gate) -> None:
    gate.repos.write("ops/noisy.sh",
                     "#!/bin/sh\nhead -c 5000000 /dev/urandom\nexit 3\n", 0o755)
    gate.repos.configure('[validate]\ncommands = ["./ops/noisy.sh"]\n')
    proc = gate.push("origin", "main")
    assert proc.returncode == 1
    assert "FAILED: ./ops/noisy.sh exit 3" in proc.stderr
    assert len(proc.stderr) < 20000


def _hook_reading(gate: Gate, hook: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """``hook`` run as git runs it in the gate's clone (pre-push: remote and URL), fed
    ``stdin``."""
    args = ["origin", "x"] if hook == "pre-push" else []
    return run(sys.executable, "-m", "taydash_hooks.hooks.main", hook, *args,
               cwd=gate.repos.work, input=stdin, check=False)


def test_malformed_stdin_is_exit_2(gate: Gate) -> None:
    proc = _hook_reading(gate, "pre-push", "garbage line\n")
    assert proc.returncode == 2 and "line 1 is malformed" in proc.stderr
    unknown = "refs/heads/main " + "1" * 40 + " refs/heads/main " + "0" * 40 + "\n"
    proc = _hook_reading(gate, "pre-push", unknown)
    assert proc.returncode == 2 and "does not exist in this repository" in proc.stderr


@pytest.mark.parametrize(("hook", "line", "said"), [
    ("pre-push", "refs/heads/main {head} main {zero}", "names remote ref 'main', not under refs/"),
    ("pre-push", "refs/heads/main {upper} refs/heads/main {zero}", "line 1 is malformed"),
    ("pre-push", "refs/heads/main {head} refs/heads/main {nothex}", "line 1 is malformed"),
    ("pre-push", "refs/heads/main {head} refs/heads/main {zero} extra", "line 1 is malformed"),
    ("pre-push", "refs/heads/main  {head} refs/heads/main {zero}", "line 1 is malformed"),
    ("pre-receive", "{zero} {nothex} refs/tags/v1.0.0", "line 1 is malformed"),
    ("pre-receive", "{zero} {head}", "line 1 is malformed"),
])
def test_hook_stdin_that_git_never_writes_is_exit_2(gate: Gate, hook: str, line: str,
                                                     said: str) -> None:
    head = gate.repos.head()
    text = line.format(head=head, upper=head.upper(), zero="0" * len(head),
                       nothex="g" * len(head)) + "\n"
    proc = _hook_reading(gate, hook, text)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr


def test_isolate_false_refuses_dirty_tree(gate: Gate) -> None:
    gate.repos.configure('[validate]\ncommands = ["./ops/validate.sh"]\nisolate = false\n')
    gate.repos.write("dirty.txt", "x")
    proc = gate.push("origin", "main")
    assert proc.returncode == 1 and "uncommitted changes" in proc.stderr
    (gate.repos.work / "dirty.txt").unlink()
    proc = gate.push("origin", "main")
    assert proc.returncode == 0, proc.stderr


def test_validate_command_on_a_revision(gate: Gate) -> None:
    good = gate.repos.head()
    gate.repos.git("rm", "-q", "ok")
    gate.repos.commit("break")
    assert taydash("validate", cwd=gate.repos.work).returncode == 1
    proc = taydash("validate", good, cwd=gate.repos.work, env=gate.env)
    assert proc.returncode == 0 and "validated" in proc.stderr
    assert taydash("validate", "nope", cwd=gate.repos.work).returncode == 2


def test_skip_is_loud(gate: Gate) -> None:
    gate.repos.git("rm", "-q", "ok")
    gate.repos.commit("break")
    proc = gate.repos.push("origin", "main", env={**gate.env, "TAYDASH_SKIP": "validate"})
    assert proc.returncode == 0
    assert "validate check skipped" in proc.stderr


# --- the pre-commit plugin path -----------------------------------------------------------



def test_pre_commit_plugin_validates_the_pushed_commit_in_isolation(repos: Repos,
                                                                      tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.mkdir()
    env = {**os.environ, "MARKER_DIR": str(marker)}
    repos.write("ops/validate.sh", CHECK_OK, 0o755)
    repos.write(".pre-commit-config.yaml", PRE_COMMIT.format(python=sys.executable))
    repos.configure('[validate]\ncommands = ["./ops/validate.sh"]\n')
    run(sys.executable, "-m", "pre_commit", "install", "-t", "pre-push", cwd=repos.work)
    repos.write("ok", "")  # untracked: must not rescue the commit
    proc = repos.push("origin", "main", env=env)
    assert proc.returncode != 0
    assert "FAILED: ./ops/validate.sh exit 1" in proc.stdout + proc.stderr
    repos.commit("add ok")
    proc = repos.push("origin", "main", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert repos.remote_ref("refs/heads/main") == repos.head()


def test_pre_commit_manifest_offers_the_three_ids() -> None:
    from pre_commit.clientlib import load_manifest

    root = Path(__file__).resolve().parents[1]
    hooks = {h["id"]: h for h in load_manifest(str(root / ".pre-commit-hooks.yaml"))}
    assert set(hooks) == {"taydash-validate", "taydash-check-tags", "taydash-snapshot-pushed-tags"}
    for h in hooks.values():
        assert h["stages"] == ["pre-push"] and h["pass_filenames"] is False
        assert h["always_run"] is True and h["require_serial"] is True


def test_fast_path_is_invalidated_by_a_config_change(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0
    gate.repos.write("ops/other.sh", "#!/bin/sh\nexit 5\n", 0o755)
    gate.repos.configure('[validate]\ncommands = ["./ops/other.sh"]\n')
    gate.repos.git("checkout", "-q", "-b", "after-change")
    proc = gate.push("origin", "after-change")
    assert proc.returncode == 1 and "FAILED: ./ops/other.sh exit 5" in proc.stderr


def test_cache_hit_hook_imports_nothing_heavy(gate: Gate) -> None:
    """As the shim starts it (``-I -S``, the package's folder put on the path): not even
    ``json`` (with ``re`` and ``enum``, as much again as the interpreter's start)."""
    assert gate.push("origin", "main").returncode == 0
    head = gate.repos.head()
    line = f"refs/heads/main {head} refs/heads/again {'0' * 40}\n"
    code = (f"import sys, io\nsys.path.insert(0, {str(ROOT)!r})\n"
            "from taydash_hooks import hook_main\n"
            f"sys.stdin = io.TextIOWrapper(io.BytesIO({line.encode()!r}))\n"
            "try:\n    hook_main.main(['pre-push', 'origin', 'x'])\n"
            "except SystemExit as e: print('exit', e.code)\n"
            "print(sorted(m for m in ('click', 'git', 'minio', 'gnupg', 'taydash_hooks.config',"
            " 'subprocess', 'logging', 'json', 're', 'enum', 'typing') if m in sys.modules))")
    proc = run(sys.executable, "-I", "-S", "-c", code, cwd=gate.repos.work)
    assert proc.stdout.splitlines()[-2:] == ["exit 0", "[]"], proc.stdout + proc.stderr
    assert "refs/heads/again" in proc.stderr and "cached" in proc.stderr


@pytest.mark.parametrize("text", [
    '{"a": [1, -2.5e3, "x\\u00e9\\n", true, false, null], "b": {}}', ' \n{"k": "v"}\t\n', "[]",
    '"plain"', "0", '{"dup": 1, "dup": 2}', '{"deep": ' + "[" * 50 + "]" * 50 + "}"])
def test_the_fast_paths_json_reads_what_json_reads(text: str) -> None:
    from taydash_hooks.gate.fast_path import parse_json

    assert parse_json(text) == json.loads(text)


@pytest.mark.parametrize("text", [
    "", "   ", '{"a": 1} {"b": 2}', '{"a": 1}x', '{"a": NaN}', "Infinity", '{"a": -Infinity}',
    "{'a': 1}", '{"a": 1,}', '{"a": "\x01"}', "[" * 100000, '{"a": 1', "\x00{not json"])
def test_the_fast_paths_json_refuses_what_json_refuses_and_a_planted_nan(text: str) -> None:
    """A state file someone planted or a crash cut short: ValueError (the full path runs),
    never another exception, never a value; NaN and Infinity, which ``json`` would take, are
    refused too."""
    from taydash_hooks.gate.fast_path import parse_json

    with pytest.raises((ValueError, RecursionError)):
        parse_json(text)


def test_a_state_file_that_is_not_json_sends_the_push_down_the_full_path(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0
    summary = gate.repos.work / ".git" / "taydash" / "config-summary.json"
    summary.write_text(summary.read_text() + ' {"validate": {"cache": false}}')
    gate.repos.git("checkout", "-q", "-b", "planted")
    proc = gate.push("origin", "planted")
    assert proc.returncode == 0, proc.stderr
    assert "refs/heads/planted" in proc.stderr and "cached" in proc.stderr  # the full path's cache
    assert json.loads(summary.read_text())  # and the full path wrote a good summary again


def _plugin_repo(repos: Repos, tmp_path: Path, toml: str, hook_id: str = "validate") -> dict[str, str]:
    marker = tmp_path / "marker"
    marker.mkdir(exist_ok=True)
    config = PRE_COMMIT.format(python=sys.executable).replace(
        "pre-commit validate", f"pre-commit {hook_id}").replace("id: taydash-validate",
                                                                f"id: taydash-{hook_id}")
    repos.write(".pre-commit-config.yaml", config)
    repos.configure(toml)
    run(sys.executable, "-m", "pre_commit", "install", "-t", "pre-push", cwd=repos.work)
    return {**os.environ, "MARKER_DIR": str(marker)}


def test_pre_commit_plugin_timeout_and_protected_branch(repos: Repos, tmp_path: Path) -> None:
    repos.write("ops/slow.sh", "#!/bin/sh\nsleep 1003\n", 0o755)
    env = _plugin_repo(repos, tmp_path, '[validate]\ncommands = ["./ops/slow.sh"]\ntimeout = 1\n'
                       '[push]\nprotected = ["main"]\n')
    proc = repos.push("origin", "main", env=env)
    assert proc.returncode != 0
    assert "timed out after 1 s" in proc.stdout + proc.stderr
    assert "sleep 1003" not in run("ps", "-eo", "args").stdout
    # A forced rewrite of main is refused through the plugin too.
    repos.write("ops/slow.sh", "#!/bin/sh\nexit 0\n", 0o755)
    repos.commit("fast now")
    assert repos.push("--no-verify", "origin", "main").returncode == 0
    repos.git("commit", "-q", "--amend", "--allow-empty", "-m", "rewritten")
    proc = repos.push("--force", "origin", "main", env=env)
    assert proc.returncode != 0
    assert "refs/heads/main is protected" in proc.stdout + proc.stderr


def test_pre_commit_plugin_check_tags(repos: Repos, tmp_path: Path) -> None:
    env = _plugin_repo(repos, tmp_path, '[tags]\nformats = ["ssh"]\ncheck_at_creation = false\n',
                       hook_id="check-tags")
    repos.commit("release candidate")  # a new commit, so pre-commit hands the tag over
    repos.git("tag", "v0.1.0")
    proc = repos.push("origin", "v0.1.0", env=env)
    assert proc.returncode != 0
    assert "lightweight tag" in proc.stdout + proc.stderr
    assert repos.remote_ref("refs/tags/v0.1.0") is None


def test_a_tag_accepted_by_the_policy_still_has_its_commit_validated(gate: Gate) -> None:
    gate.repos.configure('[validate]\ncommands = ["./ops/validate.sh"]\n'
                         '[tags]\nrequire_annotated = false\nrequire_signed = false\n'
                         'formats = ["ssh"]\ncheck_at_creation = false\n')
    gate.repos.git("rm", "-q", "ok")
    gate.repos.commit("broken, but tagged")
    gate.repos.git("tag", "v0.1.0")
    proc = gate.push("origin", "v0.1.0")
    assert proc.returncode == 1
    err = proc.stderr
    assert "accepted: lightweight tag allowed by configuration; FAILED: ./ops/validate.sh" in err
    assert gate.repos.remote_ref("refs/tags/v0.1.0") is None


def test_a_new_commit_whose_tree_passed_is_answered_by_the_fast_path(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0
    gate.repos.git("commit", "-q", "--amend", "-m", "same tree, new message")
    head = gate.repos.head()
    line = f"refs/heads/main {head} refs/heads/amended {'0' * 40}\n"
    code = ("import sys, io\nfrom taydash_hooks.hooks import main\n"
            f"sys.stdin = io.TextIOWrapper(io.BytesIO({line.encode()!r}))\n"
            "try:\n    main.main(['pre-push', 'origin', 'x'])\n"
            "except SystemExit as e: print('exit', e.code)\n"
            "print(sorted(m for m in ('click', 'git', 'minio', 'taydash_hooks.config',"
            " 'subprocess', 'logging') if m in sys.modules))")
    proc = run(sys.executable, "-c", code, cwd=gate.repos.work)
    assert proc.stdout.splitlines()[-2:] == ["exit 0", "[]"], proc.stdout + proc.stderr
    assert "refs/heads/amended" in proc.stderr and "cached" in proc.stderr
    # A tree that did not pass still runs the gate.
    gate.repos.git("rm", "-q", "ok")
    gate.repos.git("commit", "-q", "--amend", "-m", "broken tree")
    proc = gate.push("origin", "HEAD:refs/heads/broken")
    assert proc.returncode == 1 and "FAILED" in proc.stderr


# --- what the fast path must never answer ---------------------------------------------------


def test_a_config_edited_in_the_work_tree_is_what_the_next_pushes_answer_to(gate: Gate) -> None:
    """The fast path answers from a summary of the configuration; an edit (not committed, so
    the commit and its tree are the same) must make it stand aside, then and afterwards."""
    assert gate.push("origin", "main").returncode == 0
    gate.repos.write(".taydash.toml", '[validate]\ncommands = ["false"]\ntimeout = 30\n'
                     '[push]\nprotected = ["main"]\n')
    for branch in ("edited", "edited-again"):
        proc = gate.push("origin", f"HEAD:refs/heads/{branch}")
        assert proc.returncode == 1 and "FAILED: false exit 1" in proc.stderr, proc.stderr
        assert "cached" not in proc.stderr
        assert gate.repos.remote_ref(f"refs/heads/{branch}") is None


def test_with_the_cache_turned_off_a_commit_it_knows_is_validated_again(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0  # recorded while the cache was on
    gate.repos.write(".taydash.toml", '[validate]\ncommands = ["./ops/validate.sh"]\n'
                     'timeout = 30\ncache = false\n[push]\nprotected = ["main"]\n')
    for n, branch in enumerate(("off-1", "off-2"), 2):
        proc = gate.push("origin", f"HEAD:refs/heads/{branch}")
        assert proc.returncode == 0 and "validated (" in proc.stderr, proc.stderr
        assert gate.runs() == n


def test_a_lightweight_release_tag_on_a_validated_commit_is_judged_by_the_tag_policy(
        gate: Gate) -> None:
    """The tag names the very commit the cache says passed: only branches are answered by
    the fast path, so the policy still refuses the tag (release tags are annotated)."""
    gate.repos.configure('[validate]\ncommands = ["./ops/validate.sh"]\ntimeout = 30\n'
                         '[tags]\ncheck_at_creation = false\n')
    assert gate.push("origin", "main").returncode == 0
    gate.repos.git("tag", "v0.1.0")
    proc = gate.push("origin", "v0.1.0")
    assert proc.returncode != 0 and "cached" not in proc.stderr, proc.stderr
    assert gate.repos.remote_ref("refs/tags/v0.1.0") is None


def test_a_skip_asked_for_is_said_even_for_a_commit_the_cache_knows(gate: Gate) -> None:
    assert gate.push("origin", "main").returncode == 0
    proc = gate.repos.push("origin", "HEAD:refs/heads/skipped",
                           env={**gate.env, "TAYDASH_SKIP": "validate"})
    assert proc.returncode == 0 and "validate check skipped" in proc.stderr, proc.stderr
    assert "cached" not in proc.stderr


def test_a_validation_cache_that_is_a_symlink_is_not_followed(gate: Gate, tmp_path: Path) -> None:
    """What the cache says lets a push skip its validation: one that points elsewhere (a file
    someone else may write) is not read, by the fast path or the full one."""
    assert gate.push("origin", "main").returncode == 0
    cache = gate.repos.work / ".git" / "taydash" / "validate-cache.json"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(cache.read_bytes())  # it even says the truth, for now
    cache.unlink()
    cache.symlink_to(elsewhere)
    proc = gate.push("origin", "HEAD:refs/heads/through-a-link")
    assert proc.returncode == 0 and "validated (" in proc.stderr, proc.stderr
    assert "cached" not in proc.stderr and gate.runs() == 2
