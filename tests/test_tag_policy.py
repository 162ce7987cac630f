"""The tag policy with real keys and real tag objects (the 20 cases of the issue)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from testing import keys
from testing.gitrepo import Repos, run, taydash

DAY = 86400


def _config(ring: keys.Keyring, *, extra: str = "", creation: bool = False,
            fingerprints: tuple[str, ...] = ("trusted", "subkeyed", "expired", "revoked", "old")) -> str:
    fprs = [ring.keys[n].fingerprint for n in fingerprints if n in ring.keys]
    return (
        "[tags]\n"
        f"openpgp_fingerprints = {json.dumps(fprs)}\n"
        f"check_at_creation = {'true' if creation else 'false'}\n"
        f"{extra}"
    )


@pytest.fixture
def lab(repos: Repos, gnupghome: keys.Keyring, ssh_keys: dict[str, keys.SshKey]) -> Lab:
    return Lab(repos, gnupghome, ssh_keys)


class Lab:
    """A repository whose policy allows: trusted, subkeyed, expired, revoked (OpenPGP), alice (SSH)."""

    def __init__(self, repos: Repos, ring: keys.Keyring, ssh: dict[str, keys.SshKey]) -> None:
        self.repos, self.ring, self.ssh = repos, ring, ssh
        # The published keys file: untrusted is present but not allowed; stranger is absent.
        published = ring.export("trusted", "subkeyed", "expired", "old", "untrusted")
        published += keys.export_revoked(ring, "revoked")
        repos.write(".taydash/keys.asc", published)
        repos.write(".taydash/allowed_signers", keys.allowed_signers_line(ssh["alice"]))
        self.configure()
        repos.install()

    def configure(self, extra: str = "", creation: bool = False) -> None:
        self.repos.configure(_config(self.ring, extra=extra, creation=creation))

    def sign(self, name: str, key: str = "trusted", *, gpg_program: Path | None = None,
             target: str = "HEAD", use_subkey: bool = False) -> subprocess.CompletedProcess[str]:
        k = self.ring.keys[key]
        signing = f"{k.subkey}!" if use_subkey else k.fingerprint
        args = ["-c", f"user.signingkey={signing}"]
        if gpg_program:
            args += ["-c", f"gpg.program={gpg_program}"]
        return self.repos.git(*args, "tag", "-s", "-m", f"release {name}", name, target,
                              check=False)

    def sign_ssh(self, name: str, who: str = "alice", target: str = "HEAD",
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.repos.git("-c", "gpg.format=ssh", "-c",
                              f"user.signingkey={self.ssh[who].private}", "tag", "-s", "-m",
                              f"release {name}", name, target, check=False, env=env)

    def push_tag(self, name: str, *extra: str,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.repos.push("origin", *extra, f"refs/tags/{name}", env=env)

    def mktag(self, text: str) -> str:
        return self.repos.git("mktag", input=text).stdout.strip()

    def tag_text(self, name: str) -> str:
        return self.repos.git("cat-file", "tag", name).stdout

    def check(self, *names: str, env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
        proc = taydash("check-tags", "--json", *names, cwd=self.repos.work, env=env)
        assert proc.returncode in (0, 1), proc.stderr
        return {row["tag"]: row for row in json.loads(proc.stdout)}


def _rejected(lab: Lab, name: str, fragment: str, env: dict[str, str] | None = None) -> None:
    """Rejected by check-tags and by a real push, which leaves the remote without the tag."""
    verdict = lab.check(name, env=env)[name]
    assert verdict["verdict"] == "reject", verdict
    assert fragment in verdict["reason"], verdict
    proc = lab.push_tag(name, env=env)
    assert proc.returncode != 0
    assert fragment in proc.stderr
    assert lab.repos.remote_ref(f"refs/tags/{name}") is None


def _accepted(lab: Lab, name: str) -> dict[str, str]:
    verdict = lab.check(name)[name]
    assert verdict["verdict"] == "accept", verdict
    proc = lab.push_tag(name)
    assert proc.returncode == 0, proc.stderr
    assert lab.repos.remote_ref(f"refs/tags/{name}") == lab.repos.head(f"refs/tags/{name}")
    return verdict


def test_good_openpgp_signature_is_accepted(lab: Lab) -> None:
    assert lab.sign("v0.1.0").returncode == 0
    verdict = _accepted(lab, "v0.1.0")
    assert verdict["signer"] == lab.ring.keys["trusted"].fingerprint
    assert verdict["kind"] == "openpgp"


def test_case1_lightweight_tag(lab: Lab) -> None:
    lab.repos.git("tag", "v0.1.0")
    _rejected(lab, "v0.1.0", "lightweight tag")


def test_case2_annotated_unsigned(lab: Lab) -> None:
    lab.repos.git("tag", "-a", "-m", "x", "v0.1.0")
    _rejected(lab, "v0.1.0", "unsigned tag")


def test_case3_tampered_text(lab: Lab) -> None:
    lab.sign("v0.0.9")
    text = lab.tag_text("v0.0.9").replace("release v0.0.9", "release v0.0.9 (edited)")
    text = text.replace("tag v0.0.9", "tag v0.1.0")
    lab.repos.git("update-ref", "refs/tags/v0.1.0", lab.mktag(text))
    _rejected(lab, "v0.1.0", "bad signature")


def test_case4_key_not_in_keyring(lab: Lab) -> None:
    lab.sign("v0.1.0", "stranger")
    _rejected(lab, "v0.1.0", "unknown key")


def test_case5_good_signature_signer_not_allowed(lab: Lab) -> None:
    lab.sign("v0.1.0", "untrusted")  # in keys.asc and in the user's keyring, not allowed
    _rejected(lab, "v0.1.0", "is not in tags.openpgp_fingerprints")


def test_case6_expired_key(lab: Lab) -> None:
    then = int(time.time()) - 9 * DAY  # the key was valid then
    assert lab.sign("v0.1.0", "expired", gpg_program=lab.ring.faked_gpg(then)).returncode == 0
    _rejected(lab, "v0.1.0", "has expired")
    lab.configure(extra="allow_expired_keys = true\n")
    _accepted(lab, "v0.1.0")


def test_case7_signature_expired(lab: Lab) -> None:
    then = int(time.time()) - 5 * DAY
    gpg = lab.ring.faked_gpg(then, extra="--default-sig-expire=1d")
    assert lab.sign("v0.1.0", "old", gpg_program=gpg).returncode == 0
    _rejected(lab, "v0.1.0", "signature has expired")


def test_case8_revoked_key(lab: Lab) -> None:
    lab.sign("v0.1.0", "revoked")  # signed before the revocation was published
    _rejected(lab, "v0.1.0", "revoked")


def test_case9_subkey_of_allowed_primary(lab: Lab) -> None:
    assert lab.sign("v0.1.0", "subkeyed", use_subkey=True).returncode == 0
    text = lab.repos.git("verify-tag", "--raw", "v0.1.0", check=False).stderr
    assert lab.ring.keys["subkeyed"].subkey in text  # really made by the subkey
    verdict = _accepted(lab, "v0.1.0")
    assert verdict["signer"] == lab.ring.keys["subkeyed"].fingerprint


def test_case10_renamed_tag(lab: Lab) -> None:
    lab.sign("v0.0.1")
    lab.repos.git("update-ref", "refs/tags/v1.0.0", lab.repos.head("refs/tags/v0.0.1"))
    _rejected(lab, "v1.0.0", "renamed tag")


@pytest.mark.parametrize("target", ["HEAD^{tree}", "blob", "tag"])
def test_case11_not_a_commit(lab: Lab, target: str) -> None:
    if target == "blob":
        target = lab.repos.git("rev-parse", "HEAD:README").stdout.strip()
    elif target == "tag":
        lab.sign("v0.0.1")
        target = "v0.0.1"
    assert lab.sign("v0.1.0", target=target).returncode == 0
    _rejected(lab, "v0.1.0", "not a commit")


def test_a_lightweight_tag_allowed_by_configuration_must_still_name_a_commit(lab: Lab) -> None:
    lab.configure(extra="require_signed = false\nrequire_annotated = false\n")
    lab.repos.git("tag", "v0.1.0")
    assert _accepted(lab, "v0.1.0")["reason"] == "lightweight tag allowed by configuration"
    lab.repos.git("tag", "v0.2.0", "HEAD^{tree}")  # a tree, pushed as a release
    _rejected(lab, "v0.2.0", "not a commit: the tag points at a tree")


def test_case12_moving_a_remote_tag(lab: Lab) -> None:
    lab.sign("v0.1.0")
    _accepted(lab, "v0.1.0")
    lab.repos.commit("next")
    lab.repos.git("-c", f"user.signingkey={lab.ring.keys['trusted'].fingerprint}",
                  "tag", "-f", "-s", "-m", "moved", "v0.1.0")
    proc = lab.push_tag("v0.1.0", "--force")
    assert proc.returncode != 0
    assert "moves release tag" in proc.stderr
    assert lab.repos.remote_ref("refs/tags/v0.1.0") != lab.repos.head("refs/tags/v0.1.0")


def test_case13_ssh_signature_allowed(lab: Lab) -> None:
    assert lab.sign_ssh("v0.1.0").returncode == 0
    verdict = _accepted(lab, "v0.1.0")
    assert verdict["kind"] == "ssh" and verdict["signer"] == "alice@example.test"


def test_case14_ssh_unknown_key(lab: Lab) -> None:
    lab.sign_ssh("v0.1.0", "mallory")
    _rejected(lab, "v0.1.0", "not in tags.allowed_signers")


def test_case14_ssh_wrong_namespace(lab: Lab, tmp_path: Path) -> None:
    lab.sign_ssh("v0.0.1")
    payload = lab.tag_text("v0.0.1").split("-----BEGIN SSH SIGNATURE-----")[0]
    payload = payload.replace("tag v0.0.1", "tag v0.1.0")
    msg = tmp_path / "payload"
    msg.write_text(payload)
    run("ssh-keygen", "-Y", "sign", "-n", "file", "-f", lab.ssh["alice"].private, msg)
    oid = lab.mktag(payload + (tmp_path / "payload.sig").read_text())
    lab.repos.git("update-ref", "refs/tags/v0.1.0", oid)
    _rejected(lab, "v0.1.0", "namespace")


def test_case14_ssh_revoked_key(lab: Lab, tmp_path: Path) -> None:
    lab.sign_ssh("v0.1.0")
    revoked = tmp_path / "revoked_keys"
    revoked.write_text(lab.ssh["alice"].public + "\n")
    lab.repos.git("config", "gpg.ssh.revocationFile", str(revoked))
    _rejected(lab, "v0.1.0", "revoked")


def test_case15_ssh_validity_judged_now_not_by_tagger_date(lab: Lab) -> None:
    line = keys.allowed_signers_line(lab.ssh["alice"], 'namespaces="git",valid-before="20200101"')
    lab.repos.write(".taydash/allowed_signers", line)
    lab.repos.commit("alice's key only valid until 2020")
    # The signer backdates the tag into the window; it is judged at the current time.
    old = {**os.environ, "GIT_COMMITTER_DATE": "2019-06-01T00:00:00Z"}
    assert lab.sign_ssh("v0.1.0", env=old).returncode == 0
    # The tag object's own date is in the window (the commit's date is not what was forged).
    tagger = lab.repos.git("for-each-ref", "--format=%(taggerdate:unix)", "refs/tags/v0.1.0")
    assert tagger.stdout.strip() == "1559347200"  # 2019-06-01T00:00:00Z
    _rejected(lab, "v0.1.0", "not in tags.allowed_signers")
    line = keys.allowed_signers_line(lab.ssh["alice"], 'namespaces="git",valid-after="20990101"')
    lab.repos.write(".taydash/allowed_signers", line)
    lab.repos.commit("alice's key valid from 2099")
    _rejected(lab, "v0.1.0", "not in tags.allowed_signers")


def test_case16_kind_not_in_formats(lab: Lab) -> None:
    head = lab.repos.head()
    text = (f"object {head}\ntype commit\ntag v0.1.0\ntagger T <t@example.test> 1700000000 +0000\n"
            "\nx509 signed\n-----BEGIN SIGNED MESSAGE-----\nMIIB\n-----END SIGNED MESSAGE-----\n")
    lab.repos.git("update-ref", "refs/tags/v0.1.0", lab.mktag(text))
    _rejected(lab, "v0.1.0", "x509 is not in tags.formats")
    lab.configure(extra='formats = ["ssh"]\n')
    lab.sign("v0.2.0")
    _rejected(lab, "v0.2.0", "openpgp is not in tags.formats")


@pytest.mark.parametrize("how", ["two blocks", "text after"])
def test_case17_extra_signature_material(lab: Lab, how: str) -> None:
    lab.sign("v0.0.1")
    text = lab.tag_text("v0.0.1").replace("tag v0.0.1", "tag v0.1.0")
    sig = "-----BEGIN PGP SIGNATURE-----" + text.split("-----BEGIN PGP SIGNATURE-----")[1]
    text = text + sig if how == "two blocks" else text + "unsigned words\n"
    lab.repos.git("update-ref", "refs/tags/v0.1.0", lab.mktag(text))
    _rejected(lab, "v0.1.0", "several signature blocks" if how == "two blocks"
              else "unsigned text after the signature")


@pytest.mark.parametrize("name", ["v1.2", "v0.1.0-Foo", "v01.0.0", "v0.1.0-adr-1"])
def test_case18_naming(lab: Lab, name: str) -> None:
    lab.sign(name)
    verdict = lab.check(name)[name]
    assert verdict["verdict"] == "reject"
    assert "vMAJOR.MINOR.PATCH" in verdict["reason"] and "v0.1.0" in verdict["reason"]
    assert lab.push_tag(name).returncode != 0


@pytest.mark.parametrize("name", ["v0.1.0", "v0.1.0-checkpoint-daily", "v0.1.0-milestone-mqtt",
                                  "v0.1.0-adr-001", "v0.2.0-before-refactor", "v1.0.0-rc2"])
def test_convention_accepts_documented_examples(name: str) -> None:
    from taydash_hooks.tags.naming import naming_problem

    assert naming_problem(name, "convention") is None


@pytest.mark.parametrize("tool", ["gpgv", "ssh-keygen"])
def test_case19_hung_verifier_rejects_after_timeout(lab: Lab, tmp_path: Path, tool: str) -> None:
    hang = tmp_path / f"hung-{tool}"
    real = run("sh", "-c", f"command -v {tool}").stdout.strip()
    # Hangs on the verification call only, like a verifier waiting on a dead agent.
    hang.write_text(f'#!/bin/sh\nfor a in "$@"; do case $a in verify|*.asc) sleep 600;; esac; done\n'
                    f'exec {real} "$@"\n')
    hang.chmod(0o755)
    if tool == "gpgv":
        lab.sign("v0.1.0")
    else:
        lab.sign_ssh("v0.1.0")
    env = {**os.environ, "TAYDASH_SIGNATURE_TIMEOUT": "1",
           ("TAYDASH_GPGV" if tool == "gpgv" else "TAYDASH_SSH_KEYGEN"): str(hang)}
    _rejected(lab, "v0.1.0", "hung", env=env)  # within the check's own limit, not 600 s
    assert "sleep 600" not in run("ps", "-eo", "args").stdout


def test_case20_deleting_release_tag(lab: Lab) -> None:
    lab.sign("v0.1.0")
    _accepted(lab, "v0.1.0")
    lab.repos.git("tag", "other")
    assert lab.repos.push("origin", "refs/tags/other").returncode == 0
    proc = lab.repos.push("origin", ":refs/tags/v0.1.0")
    assert proc.returncode != 0 and "deleting a release tag" in proc.stderr
    assert lab.repos.remote_ref("refs/tags/v0.1.0")
    proc = lab.repos.push("origin", ":refs/tags/other")
    assert proc.returncode == 0, proc.stderr
    assert lab.repos.remote_ref("refs/tags/other") is None


def test_non_release_tags_are_not_judged(lab: Lab) -> None:
    lab.repos.git("tag", "wip-1")
    assert lab.check("wip-1")["wip-1"]["verdict"] == "accept"
    assert lab.push_tag("wip-1").returncode == 0


def test_all_lists_every_release_tag_and_exits_1_on_a_reject(lab: Lab) -> None:
    lab.sign("v0.1.0")
    lab.repos.git("tag", "v0.2.0")
    lab.repos.git("tag", "not-release")
    proc = taydash("check-tags", "--all", cwd=lab.repos.work)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["TAG", "KIND", "VERDICT"]
    assert any(line.startswith("v0.1.0") and " accept " in line for line in lines)
    assert any(line.startswith("v0.2.0") and " reject " in line for line in lines)
    assert not any(line.startswith("not-release") for line in lines)


# --- at creation -------------------------------------------------------------------------


def test_creation_refuses_nonconforming_release_tag(lab: Lab) -> None:
    lab.configure(creation=True)
    proc = lab.repos.git("tag", "v0.1.0", check=False)
    assert proc.returncode != 0
    assert "lightweight tag" in proc.stderr
    assert lab.repos.git("tag", "-l", "v0.1.0").stdout.strip() == ""
    bad_name = lab.sign("v1.2")
    assert bad_name.returncode != 0 and "naming convention" in bad_name.stderr
    good = lab.sign("v0.1.0")
    assert good.returncode == 0, good.stderr
    assert lab.repos.git("tag", "-l", "v0.1.0").stdout.strip() == "v0.1.0"
    before = lab.repos.head("refs/tags/v0.1.0")
    lab.repos.commit("later work")
    moved = lab.repos.git("-c", f"user.signingkey={lab.ring.keys['trusted'].fingerprint}",
                          "tag", "-f", "-s", "-m", "moved", "v0.1.0", check=False)
    assert moved.returncode != 0 and "moving a release tag" in moved.stderr
    assert lab.repos.head("refs/tags/v0.1.0") == before


def test_creation_check_ignores_fetched_tags(lab: Lab, tmp_path: Path) -> None:
    other = tmp_path / "other"
    run("git", "clone", "-q", str(lab.repos.remote), other)
    run("git", "tag", "v0.5.0", cwd=other)  # lightweight, no hooks in this clone
    run("git", "push", "-q", "origin", "v0.5.0", cwd=other)
    lab.configure(creation=True)
    proc = lab.repos.git("fetch", "-q", "--tags", "origin", check=False)
    assert proc.returncode == 0, proc.stderr
    assert lab.repos.git("tag", "-l", "v0.5.0").stdout.strip() == "v0.5.0"


def test_shell_metacharacters_in_tag_name_never_reach_a_shell(lab: Lab) -> None:
    name = "v0.1.0;touch${IFS}pwned$(touch${IFS}pwned2)"
    lab.sign(name)
    verdict = lab.check(name)[name]
    assert verdict["verdict"] == "reject" and "naming convention" in verdict["reason"]
    assert lab.push_tag(name).returncode != 0
    assert not list(lab.repos.work.rglob("pwned*"))


# --- bad input ----------------------------------------------------------------------------


def test_missing_keys_file_is_exit_2(lab: Lab) -> None:
    lab.sign("v0.1.0")
    (lab.repos.work / ".taydash/keys.asc").unlink()
    proc = taydash("check-tags", "v0.1.0", cwd=lab.repos.work)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "gpg --export" in proc.stderr


def test_secret_keys_in_keys_file_are_refused(lab: Lab) -> None:
    lab.sign("v0.1.0")
    secret = lab.ring.gpg("--armor", "--export-secret-keys", lab.ring.keys["trusted"].fingerprint)
    lab.repos.write(".taydash/keys.asc", secret)
    proc = taydash("check-tags", "v0.1.0", cwd=lab.repos.work)
    assert proc.returncode == 2 and "secret keys" in proc.stderr
    assert "PRIVATE KEY" not in proc.stderr


def test_malformed_allowed_signers_is_exit_2(lab: Lab) -> None:
    lab.sign_ssh("v0.1.0")
    lab.repos.write(".taydash/allowed_signers", "alice@example.test not-a-key\n")
    proc = taydash("check-tags", "v0.1.0", cwd=lab.repos.work)
    assert proc.returncode == 2 and "allowed_signers:1" in proc.stderr


# --- server side ----------------------------------------------------------------------------


def test_pre_receive_enforces_policy_even_with_no_verify(lab: Lab) -> None:
    remote = lab.repos.remote
    (remote / "taydash.toml").write_text(
        _config(lab.ring) + "openpgp_keys = \"keys.asc\"\n" + '[push]\nprotected = ["main"]\n')
    (remote / "keys.asc").write_text(lab.ring.export("trusted"))
    assert taydash("install", "--server", cwd=remote).returncode == 0
    lab.repos.git("tag", "-a", "-m", "x", "v0.1.0")
    proc = lab.push_tag("v0.1.0", "--no-verify")
    assert proc.returncode != 0 and "unsigned tag" in proc.stderr
    assert lab.repos.remote_ref("refs/tags/v0.1.0") is None
    lab.sign("v0.2.0")
    proc = lab.push_tag("v0.2.0", "--no-verify")
    assert proc.returncode == 0, proc.stderr
    # Protected branches on the server too.
    assert lab.repos.push("--no-verify", "origin", "main").returncode == 0
    lab.repos.git("commit", "-q", "--amend", "-m", "rewritten")
    proc = lab.repos.push("--no-verify", "--force", "origin", "main")
    assert proc.returncode != 0 and "protected" in proc.stderr


# --- hosted remotes: the CI job ---------------------------------------------------------------


def test_check_tags_ci_judges_the_pushed_tag_like_a_pre_receive(lab: Lab) -> None:
    lab.repos.configure(_config(lab.ring))
    lab.sign("v0.1.0")
    lab.repos.git("tag", "-a", "-m", "unsigned", "v0.2.0")
    github = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_REF_TYPE": "tag"}
    ok = taydash("check-tags", "--ci", cwd=lab.repos.work,
                 env={**github, "GITHUB_REF": "refs/tags/v0.1.0", "GITHUB_REF_NAME": "v0.1.0"})
    assert ok.returncode == 0 and ok.stdout.startswith("::notice title=taydash tag policy (v0.1.0)::")
    bad = taydash("check-tags", "--ci", cwd=lab.repos.work,
                  env={**github, "GITHUB_REF": "refs/tags/v0.2.0", "GITHUB_REF_NAME": "v0.2.0"})
    assert bad.returncode == 1
    assert bad.stdout.startswith("::error title=taydash tag policy (v0.2.0)::unsigned tag")
    gitlab = {**os.environ, "GITLAB_CI": "true", "CI_COMMIT_TAG": "v0.2.0"}
    bad = taydash("check-tags", "--ci", cwd=lab.repos.work, env=gitlab)
    assert bad.returncode == 1 and "taydash: tag v0.2.0: REFUSED: unsigned tag" in bad.stdout
    branch = taydash("check-tags", "--ci", cwd=lab.repos.work,
                     env={**github, "GITHUB_REF": "refs/heads/main", "GITHUB_REF_TYPE": "branch"})
    assert branch.returncode == 0 and "nothing to check" in branch.stderr
    plain = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GITLAB_CI")}
    assert taydash("check-tags", "--ci", cwd=lab.repos.work, env=plain).returncode == 2


def test_the_shipped_ci_files_run_the_ci_check() -> None:
    import yaml
    from testing.gitrepo import ROOT

    gh = yaml.safe_load((ROOT / "ci" / "github-actions.yml").read_text())
    steps = gh["jobs"]["check-tags"]["steps"]
    assert {"run": "taydash check-tags --ci"} in steps
    assert gh[True]["push"]["tags"] == ["*"]  # YAML reads the key `on` as true
    gl = yaml.safe_load((ROOT / "ci" / "gitlab-ci.yml").read_text())
    assert "taydash check-tags --ci" in gl["taydash-check-tags"]["script"]


@pytest.mark.parametrize(("name", "nearest", "rule"), [
    ("v1.2", "v1.2.0", "three numbers"),
    ("0.1.0", "v0.1.0", "lowercase v"),
    ("v01.0.0", "v1.0.0", "leading zeros"),
    ("v0.1.0-adr-1", "v0.1.0-adr-001", "three or more digits"),
    ("v0.1.0-Foo", "v0.1.0-milestone-foo", "lowercase"),
    ("v0.1.0-milestone-mqtt", None, "follows"),
])
def test_check_tags_explain_says_the_rule_and_the_nearest_name(repos: Repos, name: str,
                                                               nearest: str | None,
                                                               rule: str) -> None:
    proc = taydash("check-tags", "--explain", name, "--json", cwd=repos.work)
    doc = json.loads(proc.stdout)
    assert rule in doc["rule"] and doc["nearest"] == nearest, doc
    assert proc.returncode == (0 if nearest is None else 1)
