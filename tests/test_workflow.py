"""The deliberate-backup workflow end to end: real remotes, real keys, real services."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import keys, services
from testing.gitrepo import Repos, run, taydash

CHECK = '#!/bin/sh\ntest -f ok || { echo "ok missing"; exit 1; }\n'


class Flow:
    def __init__(self, repos: Repos, ring: keys.Keyring, pg: services.Postgres,
                 vm: services.VictoriaMetrics, store: Path) -> None:
        self.repos, self.ring, self.pg, self.vm, self.store = repos, ring, pg, vm, store
        self.db = f"flow_{secrets.token_hex(4)}"
        pg.create_db(self.db)
        pg.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 42)", db=self.db)
        fpr = ring.keys["trusted"].fingerprint
        repos.git("config", "user.signingkey", fpr)
        repos.write(".taydash/keys.asc", ring.export("trusted"))
        repos.write("ops/check.sh", CHECK, 0o755)
        repos.write("ok", "")
        self.toml = (
            '[validate]\ncommands = ["./ops/check.sh"]\n[push]\nprotected = ["main"]\n'
            f'[tags]\nopenpgp_fingerprints = ["{fpr}"]\n'
            f'[snapshots]\nstore = "file://{store}"\n'
            f'[snapshots.postgres]\ndatabases = ["{self.db}"]\nhost = "{pg.host}"\n'
            f'port = {pg.port}\nuser = "{pg.user}"\n'
            f'[snapshots.victoriametrics]\nurl = "{vm.url}"\nstorage_data_path = "{vm.storage}"\n'
        )
        repos.configure(self.toml)
        repos.install()
        assert repos.push("origin", "main").returncode == 0

    def cli(self, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return taydash(*args, cwd=self.repos.work, input=input, env=env)

    def local_tags(self) -> list[str]:
        return self.repos.git("tag", "--list").stdout.split()


@pytest.fixture
def flow(repos: Repos, gnupghome: keys.Keyring, postgres: services.Postgres,
         vm: services.VictoriaMetrics, tmp_path: Path) -> Iterator[Flow]:
    f = Flow(repos, gnupghome, postgres, vm, tmp_path / "store")
    yield f
    postgres.drop_db(f.db)


def test_backup_does_every_step(flow: Flow) -> None:
    flow.repos.commit("more work")
    proc = flow.cli("backup", "v0.1.0", "-m", "first backup", "--yes")
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    for step in ("checking the working tree is clean", "validating HEAD", "fetching origin",
                 "creating signed tag v0.1.0", "taking the snapshots", "pushing HEAD to origin/main",
                 "pushing tag v0.1.0", "confirming both on origin", "backup v0.1.0 done"):
        assert step in err, step
    head = flow.repos.head()
    assert flow.repos.remote_ref("refs/heads/main") == head
    assert flow.repos.remote_ref("refs/tags/v0.1.0") == flow.repos.head("refs/tags/v0.1.0")
    assert "manifests/v0.1.0.json" in err and "db-backups/v0.1.0_" in err
    assert (flow.store / "manifests" / "v0.1.0.json").exists()
    assert "Good signature" in flow.repos.git("tag", "-v", "v0.1.0", check=False).stderr


def test_backup_asks_before_pushing(flow: Flow) -> None:
    proc = flow.cli("backup", "v0.1.0", input="n\n")
    assert proc.returncode == 1 and "Push HEAD" in proc.stderr and "nothing was pushed" in proc.stderr
    assert flow.local_tags() == []  # rolled back
    assert not (flow.store / "manifests" / "v0.1.0.json").exists()
    assert flow.repos.remote_ref("refs/tags/v0.1.0") is None


@pytest.mark.parametrize("case", ["dirty", "detached", "bad name", "exists locally",
                                  "exists remotely", "behind", "no key", "validation"])
def test_backup_refusals_leave_the_repository_as_it_was(flow: Flow, tmp_path: Path,
                                                        case: str) -> None:
    tag = "v0.2.0"
    expected = {"dirty": "uncommitted changes: scratch.txt", "detached": "HEAD is detached",
                "bad name": "naming convention", "exists locally": "already exists locally",
                "exists remotely": "already exists on origin", "behind": "is behind origin/main",
                "no key": "could not sign", "validation": "validation of HEAD failed"}[case]
    env = None
    if case == "dirty":
        flow.repos.write("scratch.txt", "x")
    elif case == "detached":
        flow.repos.git("checkout", "-q", "--detach")
    elif case == "bad name":
        tag = "v0.2"
    elif case == "exists locally":
        flow.repos.git("tag", "v0.2.0", env={**os.environ, "TAYDASH_SKIP": "tags,snapshot"})
    elif case == "exists remotely":
        other = tmp_path / "other"
        run("git", "clone", "-q", str(flow.repos.remote), other)
        run("git", "tag", "v0.2.0", cwd=other)
        run("git", "push", "-q", "--no-verify", "origin", "v0.2.0", cwd=other)
    elif case == "behind":
        other = tmp_path / "other"
        run("git", "clone", "-q", str(flow.repos.remote), other)
        run("git", "commit", "-q", "--allow-empty", "-m", "theirs", cwd=other)
        run("git", "push", "-q", "--no-verify", "origin", "main", cwd=other)
    elif case == "no key":
        flow.repos.git("config", "user.signingkey", "0" * 40)
    elif case == "validation":
        flow.repos.git("rm", "-q", "ok")
        flow.repos.commit("break")
    tags_before = set(flow.local_tags())
    status_before = flow.repos.git("status", "--porcelain").stdout
    remote_before = flow.repos.remote_ref("refs/heads/main")
    proc = flow.cli("backup", tag, "--yes", env=env)
    assert proc.returncode in (1, 2), proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    if case == "exists remotely":  # the step that failed is the one named
        assert f"FAILED: checking {tag} is not on origin" in proc.stderr
    assert set(flow.local_tags()) == tags_before
    assert flow.repos.git("status", "--porcelain").stdout == status_before
    assert flow.repos.remote_ref("refs/heads/main") == remote_before
    assert not (flow.store / "manifests" / f"{tag}.json").exists()


def test_refused_push_rolls_back_tag_and_snapshots(flow: Flow) -> None:
    # The server refuses everything: the tag and the snapshots this run made go away.
    hook = flow.repos.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'server says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    flow.repos.commit("new work")
    proc = flow.cli("backup", "v0.3.0", "--yes")
    assert proc.returncode == 1 and "server says no" in proc.stderr
    assert "rolled back: tag v0.3.0" in proc.stderr
    assert "v0.3.0" not in flow.local_tags()
    assert not (flow.store / "manifests" / "v0.3.0.json").exists()
    assert not list(flow.store.glob("db-backups/v0.3.0_*"))


def test_no_remote_is_refused(repos: Repos) -> None:
    repos.git("remote", "remove", "origin")
    proc = taydash("backup", "v0.1.0", "--yes", cwd=repos.work)
    assert proc.returncode == 2 and "no remote" in proc.stderr


def test_release_versions_and_changelog(flow: Flow) -> None:
    flow.repos.commit("feat(api): add sensors endpoint")
    flow.repos.commit("fix: off-by-one in window")
    flow.repos.commit("docs: readme")
    proc = flow.cli("release", "minor", "sensors", "--yes")
    assert proc.returncode == 0, proc.stderr
    msg = flow.repos.git("tag", "-l", "--format=%(contents)", "v0.1.0").stdout
    assert msg.startswith("Release v0.1.0 - sensors")
    assert "Features:\n- add sensors endpoint" in msg and "Fixes:\n- off-by-one in window" in msg
    assert "Other:\n- docs: readme" in msg
    assert flow.repos.remote_ref("refs/tags/v0.1.0") is None  # no --push
    assert "push it when ready: git push origin HEAD v0.1.0" in proc.stderr  # the next step
    assert (flow.store / "manifests" / "v0.1.0.json").exists()
    verify = flow.cli("verify", "v0.1.0")
    assert verify.returncode == 1 and "push it: git push origin v0.1.0" in verify.stdout
    flow.repos.git("tag", "v0.9.9-rc1", env={**os.environ, "TAYDASH_SKIP": "tags,snapshot"})
    flow.repos.commit("fix: another")
    proc = flow.cli("release", "patch", "--yes", "--push")
    assert proc.returncode == 0, proc.stderr
    assert flow.repos.remote_ref("refs/tags/v0.9.10")  # the rc suffix is ignored for ordering
    msg = flow.repos.git("tag", "-l", "--format=%(contents)", "v0.9.10").stdout
    assert "another" in msg and "add sensors endpoint" not in msg


def test_release_needs_confirmation(flow: Flow) -> None:
    proc = flow.cli("release", "major", input="n\n")
    assert proc.returncode == 1 and "v1.0.0" in proc.stderr and "cancelled" in proc.stderr
    assert flow.local_tags() == []


def test_verify_and_drill(flow: Flow) -> None:
    assert flow.cli("backup", "v0.1.0", "--yes").returncode == 0
    proc = flow.cli("verify", "v0.1.0", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c["result"] for c in json.loads(proc.stdout)["checks"]}
    assert checks == {"remote": "pass", "signature": "pass", "clone": "pass", "validate": "pass",
                      "artifacts": "pass"}
    proc = flow.cli("drill", "--last", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["tag", "remote"]
    assert lines[1].startswith("v0.1.0") and lines[1].count("pass") == 7
    leftover = flow.pg.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'taydash_drill_%'")
    assert leftover == "0"
    # A tag only local (never pushed) fails verify's remote check.
    flow.repos.git("tag", "-s", "-m", "x", "v0.2.0", env={**os.environ, "TAYDASH_SKIP": "snapshot"})
    proc = flow.cli("verify", "v0.2.0")
    assert proc.returncode == 1 and "is not on origin" in proc.stdout


def test_drill_with_no_release_tags(flow: Flow) -> None:
    proc = flow.cli("drill")
    assert proc.returncode == 1 and "no release tags" in proc.stderr


def test_health_reports(flow: Flow) -> None:
    flow.repos.write("big.bin", os.urandom(2 * 1024 * 1024).hex()[:1] * (2 * 1024 * 1024))
    flow.repos.commit("add a big file")
    flow.repos.git("tag", "-s", "-m", "x", "v0.1.0", env={**os.environ, "TAYDASH_SKIP": "snapshot"})
    proc = flow.cli("health", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["last_release_tag"] == "v0.1.0" and doc["head_tagged"] is True
    assert doc["unpushed_commits"] == 1
    assert doc["tags_without_backup"] == ["v0.1.0"]
    assert doc["tags_not_on_remote"] == ["v0.1.0"]
    assert doc["large_blobs"][0]["path"] == "big.bin"
    assert any("not on origin" in w for w in doc["warnings"])
    text = flow.cli("health").stdout
    assert "WARNING:" in text and "large blob" in text


def test_restore_git_branch_and_paths(flow: Flow) -> None:
    flow.repos.write("app.txt", "v1\n")
    flow.repos.commit("v1")
    flow.repos.git("tag", "-s", "-m", "x", "v0.1.0", env={**os.environ, "TAYDASH_SKIP": "snapshot"})
    flow.repos.write("app.txt", "v2\n")
    flow.repos.commit("v2")
    proc = flow.cli("restore", "git", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert flow.repos.head("restore-v0.1.0") == flow.repos.head("v0.1.0^{commit}")
    assert flow.cli("restore", "git", "v0.1.0").returncode == 1  # branch exists
    flow.repos.write("app.txt", "local edit\n")
    proc = flow.cli("restore", "git", "v0.1.0", "--path", "app.txt")
    assert proc.returncode == 1 and "uncommitted changes in app.txt" in proc.stderr
    assert (flow.repos.work / "app.txt").read_text() == "local edit\n"
    proc = flow.cli("restore", "git", "v0.1.0", "--path", "app.txt", "--force")
    assert proc.returncode == 0 and (flow.repos.work / "app.txt").read_text() == "v1\n"
    flow.repos.git("checkout", "--", "app.txt")
    # A deleted path is what one restores most: it comes back without --force, staged or not.
    (flow.repos.work / "app.txt").unlink()
    proc = flow.cli("restore", "git", "v0.1.0", "--path", "app.txt")
    assert proc.returncode == 0, proc.stderr
    assert (flow.repos.work / "app.txt").read_text() == "v1\n"
    flow.repos.git("rm", "-q", "-f", "app.txt")
    proc = flow.cli("restore", "git", "v0.1.0", "--path", "app.txt")
    assert proc.returncode == 0, proc.stderr
    assert (flow.repos.work / "app.txt").read_text() == "v1\n"
    # A path the tag does not have is named; the others are restored all the same.
    (flow.repos.work / "app.txt").unlink()
    proc = flow.cli("restore", "git", "v0.1.0", "--path", "later.txt", "--path", "app.txt")
    assert proc.returncode == 1 and "v0.1.0 has no later.txt: not restored" in proc.stderr
    assert "pathspec" not in proc.stderr and (flow.repos.work / "app.txt").read_text() == "v1\n"
    proc = flow.cli("restore", "git", "v0.1.0", "--path", "later.txt")
    assert proc.returncode == 1 and "nothing was restored" in proc.stderr, proc.stderr
    assert flow.repos.head() == flow.repos.head("main")  # HEAD untouched


def test_doctor(flow: Flow) -> None:
    proc = flow.cli("doctor")
    assert proc.returncode == 0, proc.stdout
    assert "OK   signing key" in proc.stdout and "OK   pre-push hook" in proc.stdout
    flow.repos.git("config", "--unset", "user.signingkey")
    flow.repos.git("config", "gpg.format", "ssh")
    proc = flow.cli("doctor")
    assert proc.returncode == 1
    assert "FAIL signing key" in proc.stdout and "git config user.signingkey" in proc.stdout
    assert "gpg.ssh.allowedSignersFile" in proc.stdout


@pytest.mark.slow  # starts its own services (or builds a venv)
def test_demo_compose_runs_the_lifecycle_through_docker_compose_exec(tmp_path: Path) -> None:
    proc = taydash("demo", "--compose", "--dir", str(tmp_path / "demo"), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "as a docker compose stack" in out and "(inside only)" in out
    toml = (tmp_path / "demo" / "work" / ".taydash.toml").read_text()
    assert 'exec = ["docker", "compose", "exec", "-T", "victoriametrics"]' in toml
    assert 'exec = ["docker", "compose", "exec", "-T", "postgres"]' in toml
    row = next(line for line in out.splitlines() if line.strip().startswith("v0.1.0  pass"))
    assert row.split()[1:8] == ["pass"] * 7, out  # the drill restored both, inside
    assert "restored demo" in out and "into demo_restored" in out
    assert "into /mnt/vm-restored inside `docker compose exec -T victoriametrics`" in out
    tail = out[out.index("done; look at:"):]
    assert "(gone: the demo's S3 server stopped with the stack" in tail
    assert "s3://demo/backups/" not in tail  # no URL of a server that is gone
    # These machines run Docker (make test installs docker.io): the demo says it used it.
    assert "engine: real Docker" in out, out
    log = (tmp_path / "demo" / "compose" / "docker" / "state" / "argv.log").read_text()
    assert re.search(r"compose exec -T victoriametrics env TAYDASH_RUN=\w+ sh -c", log), log
    assert "taydash-dockerd-" not in run("ps", "-eo", "args").stdout  # the daemon stopped


@pytest.mark.slow  # starts its own services (or builds a venv)
def test_demo_runs(tmp_path: Path) -> None:
    proc = taydash("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "the push is blocked" in out and "FAILED: ./ops/validate.sh exit 1" in out
    assert "backup v0.1.0 done" in out
    assert "v0.1.0  pass        pass        pass        pass        pass" in out
    assert (tmp_path / "demo" / "backups" / "manifests" / "v0.1.0.json").exists()
    port = out.split("PostgreSQL on 127.0.0.1:")[1].split(",")[0]
    assert f"-p {port} " not in run("ps", "-eo", "args").stdout  # the demo's cluster stopped


def test_unreachable_remote_is_exit_3(flow: Flow, tmp_path: Path) -> None:
    flow.repos.git("remote", "set-url", "origin", str(tmp_path / "gone.git"))
    proc = flow.cli("backup", "v0.1.0", "--yes")
    assert proc.returncode == 3 and "unreachable" in proc.stderr
    assert flow.local_tags() == []


def test_health_thresholds_are_configurable(flow: Flow) -> None:
    flow.repos.write("big.bin", "x" * (300 * 1024))
    flow.repos.configure(flow.toml + "[health]\nlarge_blob_mib = 0.25\nmax_unpushed_commits = 0\n")
    doc = json.loads(flow.cli("health", "--json").stdout)
    assert [b["path"] for b in doc["large_blobs"]] == ["big.bin"]
    assert any("not on origin" in w for w in doc["warnings"])


def test_doctor_on_an_s3_store(repos: Repos, s3: services.S3Server) -> None:
    bucket = f"taydash-plain-{secrets.token_hex(4)}"
    s3.client().make_bucket(bucket)  # versioning off
    repos.configure(f'[snapshots]\nstore = "s3://{bucket}/x"\n'
                    f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n'
                    '[snapshots.victoriametrics]\nvmbackup = "no-vmbackup-here"\n')
    proc = taydash("doctor", cwd=repos.work)
    assert proc.returncode == 1
    assert "FAIL S3 credentials" in proc.stdout and "TAYDASH_S3_ACCESS_KEY" in proc.stdout
    assert "FAIL no-vmbackup-here" in proc.stdout and "apt-get install victoria-metrics" in proc.stdout
    proc = taydash("doctor", cwd=repos.work, env={**os.environ, **s3.env()})
    assert "FAIL bucket versioning" in proc.stdout and "taydash store init --yes" in proc.stdout
    assert f"mc version enable ALIAS/{bucket}" in proc.stdout  # the real name, no placeholder
    assert s3.client().get_bucket_versioning(bucket).status != "Enabled"  # doctor only looks


def test_backup_with_an_ssh_signing_key(repos: Repos, ssh_keys: dict[str, keys.SshKey]) -> None:
    alice = ssh_keys["alice"]
    repos.write(".taydash/allowed_signers", keys.allowed_signers_line(alice))
    repos.configure('[tags]\nformats = ["ssh"]\n')
    repos.install()
    repos.git("config", "gpg.format", "ssh")
    repos.git("config", "user.signingkey", str(alice.private))
    proc = taydash("backup", "v0.1.0", "-m", "ssh signed", "--yes", cwd=repos.work)
    assert proc.returncode == 0, proc.stderr
    assert "-----BEGIN SSH SIGNATURE-----" in repos.git("cat-file", "tag", "v0.1.0").stdout
    assert repos.remote_ref("refs/tags/v0.1.0") == repos.head("refs/tags/v0.1.0")
    report = json.loads(taydash("verify", "v0.1.0", "--json", cwd=repos.work).stdout)
    checks = {c["name"]: c["result"] for c in report["checks"]}
    assert checks["signature"] == "pass" and checks["remote"] == "pass"
    assert checks["artifacts"] == "n/a" and report["ok"] is True


def test_release_learns_the_remotes_tags_before_choosing(flow: Flow, tmp_path: Path) -> None:
    other = tmp_path / "other"
    run("git", "clone", "-q", str(flow.repos.remote), other)
    run("git", "tag", "-a", "-m", "theirs", "v0.2.0", cwd=other)
    run("git", "push", "-q", "--no-verify", "origin", "v0.2.0", cwd=other)
    flow.repos.commit("feat: ours")
    assert flow.local_tags() == []  # this clone has not fetched v0.2.0
    proc = flow.cli("release", "minor", "--yes", "--push")
    assert proc.returncode == 0, proc.stderr
    assert "next release: v0.3.0 (after v0.2.0)" in proc.stderr
    assert flow.repos.remote_ref("refs/tags/v0.3.0")
    assert not (flow.store / "manifests" / "v0.2.0.json").exists()


def test_backup_takes_one_snapshot_even_when_it_fails(flow: Flow) -> None:
    proc = flow.cli("backup", "v0.1.0", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("snapshot of v0.1.0 (") == 1, proc.stderr
    flow.pg.drop_db(flow.db)  # the next dump fails
    try:
        flow.repos.commit("more")
        proc = flow.cli("backup", "v0.2.0", "--yes")
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.count(f"dump of database {flow.db} failed") == 1, proc.stderr
        assert flow.local_tags() == ["v0.1.0"]
    finally:
        flow.pg.create_db(flow.db)


def test_a_tag_the_policy_refuses_is_never_snapshotted(flow: Flow) -> None:
    skip = {**os.environ, "TAYDASH_SKIP": "tags"}
    proc = flow.repos.git("tag", "v0.3.0", env=skip, check=False)  # lightweight, unsigned
    assert proc.returncode == 0
    assert "refused by the tag policy" in proc.stderr and "not snapshotted" in proc.stderr
    assert not (flow.store / "manifests" / "v0.3.0.json").exists()
    proc = flow.cli("snapshot", "v0.3.0")
    assert proc.returncode == 1 and "refused by the tag policy" in proc.stderr
    assert not (flow.store / "manifests" / "v0.3.0.json").exists()


def test_a_snapshot_of_an_old_tag_says_so_and_records_the_delay(flow: Flow) -> None:
    old = {**os.environ, "TAYDASH_SKIP": "snapshot", "GIT_COMMITTER_DATE": "@1700000000 +0000"}
    flow.repos.git("tag", "-s", "-m", "long ago", "v0.1.0", env=old)
    proc = flow.cli("snapshot", "v0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert "was created" in proc.stderr and "days ago" in proc.stderr
    assert "captures the data as it is now" in proc.stderr
    doc = json.loads((flow.store / "manifests" / "v0.1.0.json").read_text())
    assert doc["taken_after_tag_s"] > 365 * 86400


def test_drill_row_shows_why_a_tag_fails(flow: Flow) -> None:
    env = {**os.environ, "TAYDASH_SKIP": "snapshot"}
    flow.repos.git("tag", "-s", "-m", "no backup yet", "v0.1.0", env=env)
    proc = flow.cli("drill")
    assert proc.returncode == 1
    header, row = proc.stdout.splitlines()[:2]
    cells = dict(zip(header.split()[1:], row.split()[1:], strict=False))
    assert header.split()[1:6] == ["remote", "signature", "clone", "validate", "artifacts"]
    assert cells["remote"] == "FAIL" and cells["artifacts"] == "FAIL", proc.stdout


def test_doctor_catches_what_the_snapshot_would_fail_on(flow: Flow, tmp_path: Path) -> None:
    from testing.services import free_port

    port = free_port()
    broken = flow.toml.replace(f"port = {flow.pg.port}", f"port = {port}").replace(
        f'url = "{flow.vm.url}"', f'url = "http://127.0.0.1:{free_port()}"')
    # A bundle recipient whose key can sign but not encrypt.
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    run("gpg", "--batch", "--passphrase", "", "--quick-generate-key", "Sign Only <signonly@example.test>",
        "ed25519", "sign", "never", env=env)
    flow.repos.write("infra.conf", "x\n")
    flow.repos.configure(broken + '[snapshots.config]\npaths = ["infra.conf"]\n'
                         'recipients = ["signonly@example.test"]\n')
    proc = flow.cli("doctor", env=env)
    assert proc.returncode == 1
    out = proc.stdout
    assert "FAIL PostgreSQL" in out and f'port {port} failed' in out, out
    assert "FAIL VictoriaMetrics" in out and "not reachable" in out
    assert "FAIL recipient signonly@example.test" in out and "no usable encryption subkey" in out
    assert "gpg --quick-add-key" in out


def test_doctor_fix_for_the_keys_file_works_when_pasted(flow: Flow) -> None:
    (flow.repos.work / ".taydash" / "keys.asc").unlink()
    (flow.repos.work / ".taydash").rmdir()
    proc = flow.cli("doctor")
    fix = next(line.split("fix: ", 1)[1] for line in proc.stdout.splitlines()
               if "fix: mkdir -p .taydash && gpg --export" in line)
    assert flow.ring.keys["trusted"].fingerprint in fix
    run("sh", "-c", fix, cwd=flow.repos.work)
    assert "OK   tags.openpgp_keys" in flow.cli("doctor").stdout


def test_doctor_in_a_bare_repository_checks_pre_receive(repos: Repos) -> None:
    (repos.remote / "taydash.toml").write_text('[push]\nprotected = ["main"]\n')
    proc = taydash("doctor", cwd=repos.remote)
    assert "FAIL pre-receive hook" in proc.stdout and "taydash install --server" in proc.stdout
    assert taydash("install", "--server", cwd=repos.remote).returncode == 0
    assert "OK   pre-receive hook" in taydash("doctor", cwd=repos.remote).stdout


def test_doctor_object_lock_on_a_bucket_without_it(repos: Repos, s3: services.S3Server,
                                                   bucket: str) -> None:
    repos.configure(f'[snapshots]\nstore = "s3://{bucket}/x"\n'
                    f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n'
                    "object_lock_days = 7\n")
    proc = taydash("doctor", cwd=repos.work, env={**os.environ, **s3.env()})
    assert "FAIL bucket Object Lock" in proc.stdout and "--with-lock" in proc.stdout, proc.stdout


def test_tls_mismatch_names_the_likely_cause(repos: Repos, s3: services.S3Server,
                                             bucket: str) -> None:
    repos.configure(f'[snapshots]\nstore = "s3://{bucket}/x"\n'
                    f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n'
                    "secure = true\n")
    proc = taydash("backups", "list", cwd=repos.work, env={**os.environ, **s3.env()})
    assert proc.returncode == 3
    assert "secure = true, but the endpoint does not speak TLS" in proc.stderr, proc.stderr


def test_release_with_nothing_new_is_refused_unless_allowed(flow: Flow) -> None:
    assert flow.cli("release", "patch", "--yes").returncode == 0
    proc = flow.cli("release", "patch", "--yes")
    assert proc.returncode == 1 and "no commits since the last release v0.0.1" in proc.stderr
    assert flow.local_tags() == ["v0.0.1"]
    proc = flow.cli("release", "patch", "--yes", "--allow-empty")
    assert proc.returncode == 0, proc.stderr
    assert "v0.0.2" in flow.local_tags()


def test_near_miss_release_names_are_warned_about(flow: Flow) -> None:
    for name in ("V1.0.0", "release-1.0.0"):
        proc = flow.repos.git("tag", name, check=False)
        assert proc.returncode == 0
        assert f"tag {name} looks like a release but tags.release (v*) does not cover it" \
            in proc.stderr, proc.stderr
    proc = flow.repos.git("tag", "docs-update", check=False)
    assert "looks like a release" not in proc.stderr


def test_snapshot_summary_names_path_version_and_hash(flow: Flow) -> None:
    proc = flow.cli("backup", "v0.1.0", "--yes")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((flow.store / "manifests" / "v0.1.0.json").read_text())
    for art in doc["artifacts"]:
        assert f"file://{flow.store}/{art['key']}" in proc.stderr
        assert f"sha256 {art['sha256']}" in proc.stderr


def test_a_store_inside_the_working_tree_is_kept_out_of_git(flow: Flow) -> None:
    flow.repos.configure(flow.toml.replace(f'store = "file://{flow.store}"', 'store = "file://backups"'))
    proc = flow.cli("backup", "v0.1.0", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (flow.repos.work / "backups" / "manifests" / "v0.1.0.json").exists()
    assert "/backups/" in (flow.repos.work / ".git" / "info" / "exclude").read_text()
    assert flow.repos.git("status", "--porcelain").stdout == ""
    flow.repos.commit("next")
    assert flow.cli("backup", "v0.2.0", "--yes").returncode == 0  # not "uncommitted changes"


def test_pg_dump_failure_keeps_the_whole_error(flow: Flow) -> None:
    from testing.services import free_port

    port = free_port()
    flow.repos.configure(flow.toml.replace(f"port = {flow.pg.port}", f"port = {port}"))
    flow.repos.git("tag", "-s", "-m", "x", "v0.1.0", env={**os.environ, "TAYDASH_SKIP": "snapshot"})
    proc = flow.cli("snapshot", "v0.1.0", "--only", "postgres")
    assert proc.returncode == 3
    assert f'port {port} failed: Connection refused' in proc.stderr, proc.stderr
    assert "Is the server running" in proc.stderr


def _snapshot_stderr(flow: Flow, tag: str, *, tty: bool, extra: tuple[str, ...] = ()) -> str:
    import pty
    import select
    import sys

    env = {**os.environ, "TAYDASH_PROGRESS_INTERVAL": "0"}
    flow.repos.git("tag", "-s", "-m", tag, tag, env={**env, "TAYDASH_SKIP": "snapshot"})
    argv = [sys.executable, "-m", "taydash_hooks", *extra, "snapshot", tag, "--only", "postgres"]
    if not tty:
        proc = subprocess.run(argv, cwd=flow.repos.work, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr
    master, slave = pty.openpty()
    child = subprocess.Popen(argv, cwd=flow.repos.work, env=env, stdout=subprocess.DEVNULL,
                             stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    assert child.wait(timeout=60) == 0
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_long_work_shows_progress_on_a_terminal_and_plain_lines_otherwise(flow: Flow) -> None:
    flow.pg.psql("INSERT INTO t SELECT generate_series(1, 200000)", db=flow.db)
    on_tty = _snapshot_stderr(flow, "v0.1.0", tty=True)
    assert "\r\033[K" in on_tty and "postgres " + flow.db in on_tty, on_tty[-500:]
    assert "/s, " in on_tty  # bytes, rate, elapsed on one updating line
    plain = _snapshot_stderr(flow, "v0.2.0", tty=False)
    assert "\r" not in plain
    lines = [ln for ln in plain.splitlines() if f"postgres {flow.db}: " in ln and "/s, " in ln]
    assert lines, plain
    quiet = _snapshot_stderr(flow, "v0.3.0", tty=False, extra=("-q",))
    assert "/s, " not in quiet


def test_drill_checks_the_environment_rebuild(flow: Flow) -> None:
    # The seed's monthly check: from .env.example to a working system. Names only.
    fpr = flow.ring.keys["trusted"].fingerprint
    flow.repos.write(".gitignore", ".env\n")
    flow.repos.write(".env.example", "DATABASE_URL=\nMQTT_PASSWORD=\n# a comment\n")
    flow.repos.write(".env", "DATABASE_URL=postgres://x\nMQTT_PASSWORD=\n")
    flow.repos.configure(flow.toml + f'[snapshots.config]\npaths = [".env"]\nrecipients = ["{fpr}"]\n')
    assert flow.repos.push("origin", "main").returncode == 0
    assert flow.cli("backup", "v0.1.0", "--yes").returncode == 0
    proc = flow.cli("drill", "--last", "1")
    assert proc.returncode == 1
    header, row = proc.stdout.splitlines()[:2]
    assert header.split()[-2] == "environment" and row.split()[1:9] == ["pass"] * 7 + ["FAIL"]
    assert "lacks a value for MQTT_PASSWORD" in proc.stdout and "postgres://x" not in proc.stdout
    flow.repos.write(".env", "DATABASE_URL=postgres://x\nMQTT_PASSWORD=secret\n")
    flow.repos.commit("again")
    assert flow.repos.push("origin", "main").returncode == 0
    assert flow.cli("backup", "v0.2.0", "--yes").returncode == 0
    proc = flow.cli("drill", "--last", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "secret" not in proc.stdout


def test_doctor_warns_before_the_signing_key_expires(repos: Repos, tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    run("gpg", "--batch", "--passphrase", "", "--quick-generate-key", "Soon <soon@example.test>",
        "ed25519", "sign", "10d", env=env)
    fpr = next(line.split(":")[9] for line in run(
        "gpg", "--batch", "--with-colons", "--list-secret-keys", env=env).stdout.splitlines()
        if line.startswith("fpr:"))
    repos.git("config", "user.signingkey", fpr)
    repos.configure(f'[tags]\nopenpgp_fingerprints = ["{fpr}"]\n')
    proc = taydash("doctor", cwd=repos.work, env=env)
    assert proc.returncode == 1
    assert "OK   signing key allowed" in proc.stdout
    assert "FAIL signing key expiry" in proc.stdout and "expires in 10 days" in proc.stdout
    assert f"gpg --quick-set-expire {fpr}" in proc.stdout
    repos.configure('[tags]\nopenpgp_fingerprints = ["' + "A" * 40 + '"]\n')
    proc = taydash("doctor", cwd=repos.work, env=env)
    assert "FAIL signing key allowed" in proc.stdout


def test_doctor_reports_free_space_where_backups_are_staged_and_stored(flow: Flow) -> None:
    proc = flow.cli("doctor")
    assert re.search(r"OK   staging free space +[0-9.]+ GiB free in ", proc.stdout), proc.stdout
    assert re.search(rf"OK   store free space +[0-9.]+ GiB free in {flow.store}", proc.stdout)


def test_every_path_that_snapshots_pushes_the_metrics(flow: Flow) -> None:
    # The figure that tells the pushes apart: the number of backups in the store, one more
    # after each path. A path that forgot the push leaves the last pushed count behind.
    repo = f"t{flow.db}"
    url = f"{flow.vm.url}/api/v1/import/prometheus?extra_label=repo={repo}"
    flow.repos.configure(flow.toml + f'[metrics]\npush_url = "{url}"\n')
    flow.repos.commit("pushes")
    assert flow.repos.push("origin", "main").returncode == 0
    skip = {**os.environ, "TAYDASH_SKIP": "snapshot"}

    def pushed_count(expected: int, path: str) -> None:
        deadline = time.monotonic() + 60
        last = None
        while last != expected:
            assert time.monotonic() < deadline, f"{path}: pushed {last}, not {expected}"
            body = flow.vm.get(f"/api/v1/export?match[]=taydash_backups{{repo=\"{repo}\"}}")
            rows = [json.loads(line) for line in body.decode().splitlines()]
            last = int(rows[-1]["values"][-1]) if rows else None
            time.sleep(0.2)

    # 1. git tag: the reference-transaction hook.
    assert flow.repos.git("tag", "-s", "-m", "one", "v0.1.0").returncode == 0
    pushed_count(1, "the tag hook")
    # 2. git push of a tag without a backup: pre-push takes it (on_push_missing = "snapshot").
    flow.repos.commit("two")
    flow.repos.git("tag", "-s", "-m", "two", "v0.2.0", env=skip)
    proc = flow.repos.push("origin", "main", "v0.2.0")
    assert proc.returncode == 0 and "snapshot taken" in proc.stderr, proc.stderr
    pushed_count(2, "pre-push")
    # 3. taydash snapshot.
    flow.repos.commit("three")
    flow.repos.git("tag", "-s", "-m", "three", "v0.3.0", env=skip)
    assert flow.cli("snapshot", "v0.3.0").returncode == 0
    pushed_count(3, "taydash snapshot")
    # 4. taydash backup.
    flow.repos.commit("four")
    assert flow.cli("backup", "v0.4.0", "-m", "four", "--yes").returncode == 0
    pushed_count(4, "taydash backup")
    # 5. taydash release.
    flow.repos.commit("fix: five")
    proc = flow.cli("release", "patch", "--yes")
    assert proc.returncode == 0, proc.stderr
    pushed_count(5, "taydash release")
    # 6. The background job.
    flow.repos.configure(flow.toml.replace("[snapshots]\n", '[snapshots]\nmode = "background"\n')
                         + f'[metrics]\npush_url = "{url}"\n')
    assert flow.repos.git("tag", "-s", "-m", "six", "v0.5.0").returncode == 0
    pushed_count(6, "the background job")
    status = flow.repos.work / ".git" / "taydash" / "snapshot-status.json"
    assert json.loads(status.read_text())["ok"] is True
