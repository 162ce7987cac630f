"""Fixtures: every test gets its own HOME and git identity; services are real."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import keys, leftovers, services
from testing.gitrepo import Repos
from testing.skip import require
from testing.snap import Snap

# Debian keeps dockerd (and runuser) in /usr/sbin, which a non-login root shell, as CI may
# start, can lack on PATH: the suite runs as root would, with it.
for _sbin in ("/usr/sbin", "/sbin"):
    if _sbin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{os.environ.get('PATH', '')}{os.pathsep}{_sbin}"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, git identity and config isolated per test; no TAYDASH_* leaks in."""
    home = tmp_path / "home"
    home.mkdir()
    for var in list(os.environ):
        if var.startswith(("GIT_", "TAYDASH_S3", "TAYDASH_CONFIG", "TAYDASH_SKIP",
                           "TAYDASH_VERBOSE", "TAYDASH_QUIET", "PRE_COMMIT")) \
                or var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID",
                           "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "PGHOST", "PGPORT", "PGUSER"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.test\n"
        "[init]\n\tdefaultBranch = main\n"
        "[protocol \"file\"]\n\tallow = always\n"
        "[advice]\n\tdetachedHead = false\n"
    )
    return home


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """A test that leaves a process running fails, and the process is killed (a stand-in
    such as ``sleep 1000`` or a detached job must never outlive its test)."""
    mark = secrets.token_hex(8)
    os.environ[leftovers.MARK] = mark
    try:
        yield
    finally:
        os.environ.pop(leftovers.MARK, None)
    left = leftovers.marked(mark)
    if left:
        # A process being torn down (a daemon's last flush) gets a moment before it counts.
        time.sleep(0.5)
        left = leftovers.marked(mark)
    leftovers.kill(left)
    assert not left, f"processes left running by the test (now killed): {left}"


@pytest.fixture(autouse=True)
def no_gpg_agent_left(tmp_path: Path) -> Iterator[None]:
    """Every keyring a test made under its tmp_path is closed when the test is done (the
    suite used to leave a gpg-agent per such keyring running)."""
    yield
    keys.close_keyrings(tmp_path)


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    require("git", "apt-get install git")
    return Repos(tmp_path)


@pytest.fixture(scope="session")
def keyring() -> Iterator[keys.Keyring]:
    require("gpg", "apt-get install gnupg")
    with leftovers.unmarked():
        ring = keys.make_keyring()
    try:
        yield ring
    finally:
        keys.close(ring)


@pytest.fixture
def gnupghome(keyring: keys.Keyring, monkeypatch: pytest.MonkeyPatch) -> keys.Keyring:
    """The session keyring as the user's own GNUPGHOME (git tag -s signs with it)."""
    monkeypatch.setenv("GNUPGHOME", str(keyring.home))
    return keyring


@pytest.fixture
def ssh_keys(tmp_path: Path) -> dict[str, keys.SshKey]:
    require("ssh-keygen", "apt-get install openssh-client")
    folder = tmp_path / "ssh"
    return {n: keys.make_ssh_key(folder, n) for n in ("alice", "mallory")}


@pytest.fixture(scope="session")
def postgres() -> Iterator[services.Postgres]:
    with leftovers.started(services.postgres_cluster()) as pg:
        yield pg


@pytest.fixture(scope="session")
def vm() -> Iterator[services.VictoriaMetrics]:
    with leftovers.started(services.victoria_metrics()) as server:
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[services.S3Server]:
    with leftovers.started(services.s3_server()) as server:
        yield server


@pytest.fixture
def bucket(s3: services.S3Server) -> str:
    """A new, empty bucket for this test."""
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    name = f"taydash-test-{secrets.token_hex(6)}"
    client = s3.client()
    client.make_bucket(name)
    # As `taydash store init` leaves it: taydash itself never changes bucket settings.
    client.set_bucket_versioning(name, VersioningConfig(ENABLED))
    return name


@pytest.fixture(scope="session")
def s3rver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.S3Server]:
    with leftovers.started(services.s3rver_server(tmp_path_factory.mktemp("s3rver"))) as server:
        yield server


@pytest.fixture
def s3rver_bucket(s3rver: services.S3Server) -> str:
    name = f"taydash-test-{secrets.token_hex(6)}"
    s3rver.client().make_bucket(name)
    return name


# Fixtures that start a service (a database, VictoriaMetrics, an S3 server, Docker) or a
# whole stack on top of them: a test that uses one is "slow", and `make check` leaves it out.
SERVICES = frozenset({"postgres", "vm", "s3", "s3rver", "bucket", "s3rver_bucket", "snap",
                      "history_vm", "stack", "flow", "compose", "bundled", "lab", "gate"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a service as ``slow`` (by its fixtures, so a new test is
    marked without anyone remembering to)."""
    for item in items:
        if SERVICES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under TAYDASH_TEST_DISALLOW_SKIP=1 (CI) a skipped test is a failed test."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("TAYDASH_TEST_DISALLOW_SKIP") == "1":
        report.outcome = "failed"
        report.longrepr = f"skipped, but TAYDASH_TEST_DISALLOW_SKIP=1: {report.longrepr}"


@pytest.fixture(params=["file", "s3"])
def snap(request: pytest.FixtureRequest, repos: Repos, postgres: services.Postgres,
         vm: services.VictoriaMetrics, gnupghome: keys.Keyring, tmp_path: Path) -> Iterator[Snap]:
    env = dict(os.environ)
    s3 = None
    if request.param == "file":
        url = f"file://{tmp_path / 'store'}"
    else:
        s3 = request.getfixturevalue("s3")
        bucket = request.getfixturevalue("bucket")
        url = f"s3://{bucket}/backups"
        env.update(s3.env())
    snap = Snap(repos, postgres, vm, url, s3, env)
    yield snap
    postgres.drop_db(snap.db)


@pytest.fixture
def history_vm(tmp_path: Path) -> Iterator[services.VictoriaMetrics]:
    """A VictoriaMetrics of this test's own that keeps backdated samples (two years)."""
    with leftovers.unmarked():
        vm = services.start_vm(tmp_path / "vm", "-retentionPeriod=2y")
    try:
        yield vm
    finally:
        services.stop_vm(vm)
