"""Operator experience: what a new user sees, from the README alone."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from testing.gitrepo import ROOT, Repos, run, taydash


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split(f"<!-- {marker}:start -->", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    return re.sub(r"^```\w*\n|```\s*$", "", block.strip(), flags=re.M)


def test_the_readme_pre_commit_snippet_works_as_written(repos: Repos) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    repos.write(".pre-commit-config.yaml", _readme_block("pre-commit-local"))
    repos.write("check.sh", "#!/bin/sh\nexit 0\n", 0o755)
    repos.configure('[validate]\ncommands = ["./check.sh"]\n[tags]\nrequire_signed = false\n')
    run(sys.executable, "-m", "pre_commit", "install", "-t", "pre-push", cwd=repos.work, env=env)
    # Outside a push: passes, and says so visibly (no --verbose).
    proc = run(sys.executable, "-m", "pre_commit", "run", "--hook-stage", "pre-push",
               "--all-files", cwd=repos.work, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("nothing to check: not a push") == 2, proc.stdout
    # A real push through pre-commit validates the pushed commit.
    proc = repos.push("origin", "HEAD:refs/heads/feature", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "validated" in proc.stdout + proc.stderr


def test_the_manifest_hooks_are_verbose() -> None:
    from pre_commit.clientlib import load_manifest

    hooks = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert hooks and all(h["verbose"] for h in hooks)


def test_health_strict_and_counts(repos: Repos) -> None:
    repos.configure("[health]\nmax_unpushed_commits = 0\n")
    proc = taydash("health", cwd=repos.work)
    assert proc.returncode == 0
    assert "1 commit on main is not on origin" in proc.stdout, proc.stdout
    proc = taydash("health", "--strict", cwd=repos.work)
    assert proc.returncode == 1
    repos.commit("two")
    proc = taydash("health", "--strict", "--json", cwd=repos.work)
    assert proc.returncode == 1
    assert "2 commits on main are not on origin" in json.loads(proc.stdout)["warnings"]
    repos.push("--no-verify", "origin", "main")
    env = {**os.environ, "TAYDASH_SKIP": "tags,snapshot"}
    for i in range(13):
        repos.git("tag", f"v0.{i}.0", env=env)
    proc = taydash("health", cwd=repos.work)
    assert "13 release tags not on origin" in proc.stdout
    assert "…and 3 more" in proc.stdout


def test_backups_list_sorts_by_version_with_a_header(repos: Repos, tmp_path: Path,
                                                     gnupghome: object) -> None:
    store = tmp_path / "store"
    repos.write("infra.conf", "x\n")
    repos.configure(f'[snapshots]\nstore = "file://{store}"\n[snapshots.config]\n'
                    'paths = ["infra.conf"]\nrecipients = ["trusted@example.test"]\n')
    repos.install()
    for name in ("v0.2.0", "v0.10.0", "v0.9.1", "v0.10.0-rc1"):
        assert repos.git("tag", "-a", "-m", name, name).returncode == 0
    proc = taydash("backups", "list", cwd=repos.work)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["tag", "created", "commit"]
    assert [line.split()[0] for line in lines[1:]] == ["v0.2.0", "v0.9.1", "v0.10.0",
                                                        "v0.10.0-rc1"]
    assert json.loads(taydash("backups", "list", "--json", cwd=repos.work).stdout)
    key = json.loads(taydash("backups", "show", "v0.2.0", "--json",
                             cwd=repos.work).stdout)["artifacts"][0]["key"]
    proc = taydash("objects", "versions", key, cwd=repos.work)
    assert proc.returncode == 0 and "null" not in proc.stdout
    assert "keeps no object versions" in proc.stderr and proc.stdout.startswith("current\t")
