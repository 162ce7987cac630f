"""The README's scheduled drill (cron line and systemd unit) run as printed, by a dedicated
user that is not root, with taydash from a virtualenv of that user's own: the way a server runs
it, not the way the developer's shell does.

What the README tells the admin to do is done here step by step: a venv install (its taydash
named by full path), a clone that user owns, a GnuPG home with the decryption key, a 0600
``drill.env`` with the store's credentials. Only the paths are this test's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import docs, keys
from testing import wheel as wheel_of_checkout
from testing.gitrepo import run
from testing.skip import require
from testing.snap import Snap

from taydash_hooks.sandbox import wait_for

USER = "taydash-drill"
# What cron gives a job (Debian's cron: PATH, and HOME, LOGNAME, SHELL from the passwd entry).
CRON_PATH = "/usr/bin:/bin"
# systemd's default PATH for a system unit.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Account:
    """Run commands as the dedicated user: ``runuser`` when we are root, else ourselves (then
    we are already someone other than root)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        if os.geteuid() == 0:
            require("runuser", "apt-get install util-linux")
            try:
                pwd.getpwnam(USER)
            except KeyError:
                run("useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", USER)
            self.name = USER
            self.prefix = ["runuser", "-u", USER, "--"]
        else:
            self.name = pwd.getpwuid(os.geteuid()).pw_name
            self.prefix = []
        self.uid = pwd.getpwnam(self.name).pw_uid
        self.gid = pwd.getpwnam(self.name).pw_gid

    def own(self, *paths: Path) -> None:
        for path in paths:
            os.chown(path, self.uid, self.gid)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        # `env -i`: nothing of the test's own environment crosses over, only what is given.
        full = [*self.prefix, "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]
        proc = subprocess.run(full, cwd=cwd, capture_output=True, text=True, timeout=600)
        if check:
            assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
        return proc

    def processes(self) -> list[str]:
        """What still runs as this user (an ended process that awaits its reaping is not)."""
        out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-u", str(self.uid)],
                             capture_output=True, text=True, timeout=30).stdout
        return [line for line in out.splitlines() if not line.split()[1].startswith("Z")]


@pytest.fixture
def base() -> Iterator[Path]:
    # Outside pytest's tmp_path: that folder is root's own (0700), no other user reaches in.
    path = Path(tempfile.mkdtemp(prefix="tdsched-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _unit(text: str) -> dict[str, str]:
    """The [Service] section of the README's unit; a directive this reader does not know
    fails the test, so the unit cannot grow one that the test would silently not honour."""
    service = text.split("[Service]", 1)[1].split("\n[", 1)[0].split("# /etc/systemd", 1)[0]
    known = {"Type", "User", "WorkingDirectory", "EnvironmentFile", "ExecStart", "StandardOutput"}
    found = dict(line.split("=", 1) for line in service.strip().splitlines())
    assert set(found) <= known, set(found) - known
    assert found["Type"] == "oneshot"
    return found


def _environment_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile=: KEY=VALUE lines, # comments."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.mark.parametrize("snap", ["s3"], indirect=True)  # a file store is root's own folder
def test_the_scheduled_drill_runs_as_a_dedicated_user_from_its_own_venv(
        snap: Snap, base: Path) -> None:
    python = require("/usr/bin/python3", "apt-get install python3")
    assert (wheel_of_checkout.WHEELHOUSE / ".stamp").exists(), "run `make test` (it fills .venv/wheelhouse)"
    account = Account(base / "home")
    assert snap.tag("v0.1.0").returncode == 0
    assert snap.repos.push("origin", "main", "v0.1.0", env=snap.env).returncode == 0

    # The install: a virtualenv of the system's Python, root-owned and readable by all, as
    # /opt/taydash would be. (The suite's own interpreter lives under /root, which no other
    # user can read.)
    opt = base / "opt" / "taydash"
    run(python, "-m", "venv", "--without-pip", opt)
    wheel = wheel_of_checkout.build(base / "build")
    run(Path(__file__).parents[1] / ".venv" / "bin" / "python", "-m", "pip", "--python",
        opt / "bin" / "python", "install", "-q", "--no-index", "--find-links",
        wheel_of_checkout.WHEELHOUSE, wheel, timeout=300)
    run("chmod", "-R", "a+rX", opt)
    taydash = opt / "bin" / "taydash"

    # The user's own places: its home, its clone, its log folder, its keyring, its drill.env.
    remote = base / "remote.git"
    run("git", "clone", "--quiet", "--bare", snap.repos.remote, remote)
    # The remote as that user reaches it (over ssh on a server; here a folder it owns: git
    # refuses a local repository of another owner, which is the next test's case).
    run("chown", "-R", f"{account.uid}:{account.gid}", remote)
    for folder in (account.home, base / "srv", base / "log", base / "etc"):
        folder.mkdir(parents=True)
        account.own(folder)
    home_env = {"HOME": str(account.home), "PATH": CRON_PATH}
    clone = base / "srv" / "taylordash"
    gnupg = base / "srv" / "taydash-gnupg"
    ring = keys.Keyring(Path(snap.env["GNUPGHOME"]))
    keyfile = base / "etc" / "key.asc"
    keyfile.write_text(ring.gpg("--armor", "--export-secret-keys", "trusted@example.test"))
    account.own(keyfile)
    # The README's set-up block, line by line as root runs it: `sudo -u backup` is our user.
    for line in docs.block("scheduled-drill-setup", "sh").splitlines():
        line = (line.replace("/srv/taylordash", str(clone))
                .replace("/srv/taydash-gnupg", str(gnupg))
                .replace("REMOTE", str(remote)).replace("key.asc", str(keyfile))
                .replace("-o backup", f"-o {account.name}"))
        argv = shlex.split(line)
        if argv[:3] == ["sudo", "-u", "backup"]:
            account.run(argv[3:], home_env)
        else:
            assert argv[0] == "sudo" and "backup" not in argv, argv
            run(*argv[1:])
    envfile = base / "etc" / "drill.env"
    envfile.write_text("".join(f"{k}={v}\n" for k, v in {
        "GNUPGHOME": str(gnupg), "TAYDASH_PROGRESS_INTERVAL": "600",
        **{k: v for k, v in snap.env.items() if k.startswith("TAYDASH_S3_")}}.items()))
    envfile.chmod(0o600)
    account.own(envfile)
    log = base / "log" / "drill.json"

    def here(text: str) -> str:
        return (text.replace("/srv/taylordash", str(clone))
                .replace("/opt/taydash/bin/taydash", str(taydash))
                .replace("/etc/taydash/drill.env", str(envfile))
                .replace("/var/log/taydash/drill.json", str(log)))

    cron = here(docs.block("scheduled-drill-cron", "sh").splitlines()[1].split(None, 5)[5])
    cron_env = {**home_env, "SHELL": "/bin/sh", "LOGNAME": account.name}
    unit = _unit(here(docs.block("scheduled-drill-systemd", "ini")))
    assert unit["User"] == "backup"  # the README's name for the dedicated user: ours is USER

    def systemd() -> int:
        """The unit's [Service] as systemd runs it: the user, the folder, the environment file,
        the command, stdout truncated into the file."""
        out = Path(unit["StandardOutput"].removeprefix("truncate:"))
        env = {"PATH": SYSTEMD_PATH, "HOME": str(account.home), "USER": account.name,
               "LOGNAME": account.name, "SHELL": "/bin/sh",
               **_environment_file(Path(unit["EnvironmentFile"]))}
        proc = account.run(["sh", "-c", f'exec {unit["ExecStart"]} > {shlex.quote(str(out))}'],
                           env, cwd=Path(unit["WorkingDirectory"]), check=False)
        return proc.returncode

    try:
        quiet = account.run(["sh", "-c", cron], cron_env, check=False)
        assert quiet.returncode == 0 and quiet.stdout == "", quiet.stdout + quiet.stderr
        doc = json.loads(log.read_text())  # one JSON document per run
        assert doc["ok"] is True and [t["tag"] for t in doc["tags"]] == ["v0.1.0"], doc
        assert log.stat().st_uid == account.uid
        # The drill's record is the user's, in the user's clone (health reads it from there).
        assert any(p.stat().st_uid == account.uid for p in (clone / ".git" / "taydash").rglob("*.json"))
        assert systemd() == 0
        assert json.loads(log.read_text())["ok"] is True

        # The dump flipped in the store: both say so, the cron line in what cron mails.
        dump = next(a for a in snap.manifest("v0.1.0")["artifacts"]  # type: ignore[union-attr]
                    if a["kind"] == "postgres" and not a.get("roles"))
        raw = bytearray(snap.raw_get(dump["key"]))
        raw[len(raw) // 2] ^= 0xFF
        snap.raw_put(dump["key"], bytes(raw))
        loud = account.run(["sh", "-c", cron], cron_env, check=False)
        assert "taydash drill FAILED" in loud.stdout, loud.stdout + loud.stderr
        assert json.loads(log.read_text())["ok"] is False
        assert systemd() == 1  # the unit is left failed
        assert json.loads(log.read_text())["ok"] is False
    finally:
        account.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], home_env, check=False)
    if account.prefix:  # a user of its own: nothing of it may still run (gpg-agent takes a
        # moment to end after gpgconf asked it to)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not account.processes(), "the user's processes to end", 10)
        assert account.processes() == [], account.processes()


@pytest.mark.parametrize("snap", ["s3"], indirect=True)
def test_a_clone_owned_by_someone_else_needs_what_the_readme_says(snap: Snap, base: Path) -> None:
    """git refuses a repository another user owns ("dubious ownership"); the README's
    `git config --global --add safe.directory` line is what lets the drill read it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: only root can make a clone that another user runs in")
    account = Account(base / "home")
    account.home.mkdir()
    account.own(account.home)
    clone = base / "srv" / "taylordash"
    run("git", "clone", "--quiet", snap.repos.remote, clone)  # root's clone
    run("chmod", "-R", "a+rX", base / "srv")
    env = {"HOME": str(account.home), "PATH": CRON_PATH}
    refused = account.run(["git", "-C", str(clone), "rev-parse", "HEAD"], env, check=False)
    assert refused.returncode != 0 and "dubious ownership" in refused.stderr, refused.stderr
    line = docs.inline("safe.directory /srv/taylordash")
    argv = shlex.split(line.replace("/srv/taylordash", str(clone)))
    assert argv[:3] == ["sudo", "-u", "backup"], argv
    account.run(argv[3:], env)
    assert account.run(["git", "-C", str(clone), "rev-parse", "HEAD"], env).stdout.strip()
