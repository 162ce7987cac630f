"""One test-suite for every store backend: file:// and s3:// (moto, or MinIO when configured),
and s3rver, a second S3 implementation that lacks versioning and conditional writes."""

from __future__ import annotations

import io
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testing import services

from taydash_hooks.config import Config, SnapshotsConfig
from taydash_hooks.errors import TaydashError
from taydash_hooks.store import S3Options, Store
from taydash_hooks.store.local import FileStore
from taydash_hooks.store.s3 import S3Store


@pytest.fixture(params=["file", "s3", "s3rver"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "file":
        yield FileStore(tmp_path / "store")
    elif request.param == "s3":
        s3 = request.getfixturevalue("s3")
        yield s3.store(request.getfixturevalue("bucket"))
    else:
        # The one way such a server can hold backups: one machine, said in the configuration.
        s3 = request.getfixturevalue("s3rver")
        yield s3.store(request.getfixturevalue("s3rver_bucket"),
                            unsafe_single_writer=True)


class Failing(io.RawIOBase):
    """A producer that dies after ``n`` bytes, like a pg_dump killed mid-stream."""

    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise RuntimeError("producer died")
        chunk = b"x" * min(self.left, size if size > 0 else self.left)
        self.left -= len(chunk)
        return chunk


def test_put_and_read_back_with_hash(store: Store) -> None:
    import hashlib

    data = b"dump bytes " * 1000
    w = store.put_stream("db-backups/v0.1.0_20260101_000000.dump", io.BytesIO(data))
    assert w.size == len(data) and w.sha256 == hashlib.sha256(data).hexdigest()
    with store.open("db-backups/v0.1.0_20260101_000000.dump") as fh:
        assert fh.read() == data
    assert store.exists("db-backups/v0.1.0_20260101_000000.dump")
    assert store.keys("db-backups/") == ["db-backups/v0.1.0_20260101_000000.dump"]
    assert "secret" not in store.url and "testing-access" not in store.url


def test_never_overwrites_a_key(store: Store) -> None:
    store.put_bytes("manifests/v1.json", b"first")
    with pytest.raises(TaydashError, match="never overwritten"):
        store.put_bytes("manifests/v1.json", b"second")
    with store.open("manifests/v1.json") as fh:
        assert fh.read() == b"first"


def test_failed_stream_leaves_nothing_under_the_key(store: Store) -> None:
    big = 20 * 1024 * 1024  # past one multipart part on S3
    with pytest.raises(Exception, match="producer died"):
        store.put_stream("db-backups/broken.dump", Failing(big))  # type: ignore[arg-type]
    assert not store.exists("db-backups/broken.dump")
    assert store.keys("db-backups/") == []
    if isinstance(store, S3Store) and _lists_uploads(store):
        uploads = store.client._list_multipart_uploads(store.bucket)
        assert not uploads.uploads  # no open multipart upload left behind


def _lists_uploads(store: S3Store) -> bool:
    """s3rver has no ListMultipartUploads: what is left of an upload cannot be seen there."""
    from minio.error import S3Error

    try:
        store.client._list_multipart_uploads(store.bucket)
        return True
    except S3Error as exc:
        assert exc.code == "NotImplemented"
        return False


def test_keys_that_escape_the_prefix_are_refused(store: Store) -> None:
    for bad in ("../x", "/etc/passwd", "a/../../b", "a//b"):
        with pytest.raises(TaydashError):
            store.put_bytes(bad, b"x")


def test_s3_versions_and_promote(s3: services.S3Server, bucket: str) -> None:
    store = s3.store(bucket)
    w1 = store.put_bytes("db-backups/a.dump", b"good")
    # Someone overwrites the object behind our back (a flipped byte).
    s3.client().put_object(bucket, "team/x/db-backups/a.dump", io.BytesIO(b"gooe"), 4)
    versions = store.versions("db-backups/a.dump")
    assert len(versions) == 2 and sum(v.latest for v in versions) == 1
    store.promote("db-backups/a.dump", w1.version_id or "")
    with store.open("db-backups/a.dump") as fh:
        assert fh.read() == b"good"


def test_s3_errors_are_one_sentence(s3: services.S3Server, bucket: str) -> None:
    missing = S3Store("no-such-bucket-xyz", "", S3Options(endpoint=s3.endpoint), env=s3.env())
    with pytest.raises(TaydashError, match="does not exist") as exc:
        missing.put_bytes("k", b"x")
    assert exc.value.code == 3
    with pytest.raises(TaydashError, match="no S3 credentials"):
        S3Store(bucket, "", S3Options(endpoint=s3.endpoint), env={})
    dead = S3Store(bucket, "", S3Options(endpoint=f"127.0.0.1:{services.free_port()}"), env=s3.env())
    with pytest.raises(TaydashError, match="cannot reach") as exc:
        dead.put_bytes("k", b"x")
    assert exc.value.code == 3


def test_store_url_table(tmp_path: Path) -> None:
    from taydash_hooks.git import Repo
    from taydash_hooks.snapshots.location import open_store

    repo = Repo(tmp_path / ".git", tmp_path / ".git", tmp_path)
    default = open_store(repo, Config(root=tmp_path, snapshots=SnapshotsConfig()))
    assert default.url == f"file://{tmp_path / '.git' / 'taydash' / 'backups'}"
    rel = open_store(repo, Config(root=tmp_path, snapshots=SnapshotsConfig(store="file://bk")))
    assert rel.url == f"file://{tmp_path / 'bk'}"


@pytest.fixture
def authenticating_s3() -> Iterator[str]:
    """An S3 endpoint that checks credentials: the real MinIO, or moto with auth switched on."""
    import os
    import socket
    import subprocess
    import sys

    endpoint = os.environ.get("TAYDASH_TEST_S3_ENDPOINT")
    if endpoint:
        yield endpoint.removeprefix("http://")
        return
    port = services.free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        services.wait_for(lambda: socket.create_connection(("127.0.0.1", port)).close() is None,
                          "moto server")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def test_wrong_credentials_are_one_sentence_without_the_secret(authenticating_s3: str) -> None:
    secret = "not-the-right-secret-0123456789"
    store = S3Store("taydash-creds", "x", S3Options(endpoint=authenticating_s3, region="us-east-1"),
                    env={"TAYDASH_S3_ACCESS_KEY": "AKIAWRONGWRONGWRONG1", "TAYDASH_S3_SECRET_KEY": secret})
    with pytest.raises(TaydashError) as exc:
        store.put_bytes("k", b"x")
    assert exc.value.code == 3
    assert "rejected the S3 credentials" in exc.value.message
    assert secret not in exc.value.message and "AKIAWRONG" not in store.url


def test_object_lock_retention_on_every_upload(s3: services.S3Server) -> None:
    import datetime

    client = s3.client()
    client.make_bucket("taydash-locked", object_lock=True)
    store = S3Store("taydash-locked", "p", S3Options(endpoint=s3.endpoint, region="us-east-1",
                                                    object_lock_days=3), env=s3.env())
    small = store.put_bytes("manifests/v1.json", b"{}")
    big = store.put_stream("db-backups/v1.dump", io.BytesIO(b"y" * (17 * 1024 * 1024)))
    for key, w in (("p/manifests/v1.json", small), ("p/db-backups/v1.dump", big)):
        meta = client.stat_object("taydash-locked", key, version_id=w.version_id).metadata
        assert meta["x-amz-object-lock-mode"] == "GOVERNANCE"
        until = datetime.datetime.fromisoformat(
            meta["x-amz-object-lock-retain-until-date"].replace("Z", "+00:00"))
        left = until - datetime.datetime.now(datetime.timezone.utc)
        assert datetime.timedelta(days=2) < left <= datetime.timedelta(days=3)


def test_clean_partial_removes_only_that_tags_dead_attempts(store: Store) -> None:
    # A run's keys are <tag>_<TS>-<RUN>: another run of the same tag, or a tag whose name
    # extends this one, is never touched.
    mine = "db-backups/v1_20260101_000000-aaaa1111.dump"
    others = ["db-backups/v1_x_20260101_000000-aaaa1111.dump",
              "db-backups/v1_20260101_000000-aaaa11112.dump",
              "db-backups/v1_20260101_000000-bbbb2222.dump"]
    if isinstance(store, FileStore):
        folder = store.root / "db-backups"
        folder.mkdir(parents=True)
        for key in (mine, *others):
            (store.root / f"{key.replace('db-backups/', 'db-backups/.')}.abc.partial").write_bytes(b"x")
        leftovers = lambda: sorted(p.name for p in folder.iterdir())  # noqa: E731
    elif not _lists_uploads(store):
        # Nothing to find and nothing to remove, and saying so is not a failure.
        assert store.clean_partial("db-backups/v1_20260101_000000-aaaa1111") == 0
        return
    else:
        for key in (mine, *others):
            store.client._create_multipart_upload(store.bucket, f"team/x/{key}", {})
        leftovers = lambda: sorted(  # noqa: E731
            str(u.object_name) for u in store.client._list_multipart_uploads(store.bucket).uploads)
    assert len(leftovers()) == 4
    assert store.clean_partial("db-backups/v1_20260101_000000-aaaa1111") == 1
    remaining = leftovers()
    names = [k.rsplit("/", 1)[1] for k in others]
    assert len(remaining) == 3 and all(any(n in r for r in remaining) for n in names), remaining


def test_file_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = FileStore(tmp_path / "store")
        store.put_bytes("db-backups/deep/v1_20260101_000000-aaaa1111.dump", b"secret rows")
    finally:
        os.umask(old)
    for path in (tmp_path / "store", tmp_path / "store" / "db-backups",
                 tmp_path / "store" / "db-backups" / "deep"):
        assert path.stat().st_mode & 0o777 == 0o700, path
    dump = tmp_path / "store" / "db-backups" / "deep" / "v1_20260101_000000-aaaa1111.dump"
    assert dump.stat().st_mode & 0o777 == 0o600
    assert store.health().ok
    dump.chmod(0o644)  # an old store, written before this rule
    health = store.health()
    assert not health.ok and "readable by other users" in health.detail
    assert health.fix == f"chmod -R go-rwx {tmp_path / 'store'}"


class _Held(io.RawIOBase):
    """The first writer's data, held after its first read until ``release`` is set: that writer
    has passed every check of its own and is inside its write when the second one runs."""

    def __init__(self, data: bytes, entered: threading.Event, release: threading.Event) -> None:
        self.data, self.entered, self.release = data, entered, release

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60)
        chunk, self.data = self.data[:max(size, 1)], self.data[max(size, 1):]
        return chunk


def _hold_inside_write(store: Store, key: str, data: bytes, entered: threading.Event,
                       release: threading.Event) -> Callable[[], object]:
    """The first writer's put, to run in a thread, held inside its critical section."""
    if isinstance(store, FileStore):
        # Past the existence check, writing its temporary file, before link(2).
        return lambda: store.put_stream(key, _Held(data, entered, release))
    assert isinstance(store, S3Store)
    # Past every client-side step, just before its PUT reaches the server.
    real, first = store.client._put_object, threading.get_ident

    def held(*args: object, **kwargs: object) -> object:
        if threading.get_ident() == holder[0]:
            entered.set()
            assert release.wait(60)
        return real(*args, **kwargs)

    holder: list[int] = []
    store.client._put_object = held  # type: ignore[method-assign]

    def work() -> object:
        holder.append(first())
        return store.put_bytes(key, data)

    return work


# s3rver cannot do this (no conditional writes): that is what unsafe_single_writer says.
@pytest.mark.parametrize("store", ["file", "s3"], indirect=True)
def test_conditional_create_lets_exactly_one_writer_win(store: Store) -> None:
    from taydash_hooks.store.base import KeyTaken

    entered, release = threading.Event(), threading.Event()
    outcome: list[object] = []
    first = _hold_inside_write(store, "manifests/v1.json", b'{"first": 1}', entered, release)

    def run_first() -> None:
        try:
            outcome.append(first())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert entered.wait(60), "the first writer never reached its write"
        # While the first writer is inside its write, the second one completes.
        store.put_bytes("manifests/v1.json", b"{}")
    finally:
        release.set()
        thread.join(60)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], KeyTaken), outcome
    with store.open("manifests/v1.json") as fh:
        assert fh.read() == b"{}"
    # And one after the other, the second is refused just the same.
    with pytest.raises(KeyTaken):
        store.put_bytes("manifests/v1.json", b'{"other": 1}')


def test_bucket_settings_are_never_changed_without_being_asked(s3: services.S3Server) -> None:
    import secrets

    name = f"taydash-plain-{secrets.token_hex(6)}"
    s3.client().make_bucket(name)  # versioning off
    store = s3.store(name)
    store.put_bytes("manifests/v1.json", b"{}")
    assert s3.client().get_bucket_versioning(name).status != "Enabled"
    assert store.features().versioning == "Off" and "versioning (it is Off)" in \
        store.features().missing()


def test_s3rver_features_are_probed_and_a_snapshot_store_refuses_them(
        s3rver: services.S3Server, s3rver_bucket: str, tmp_path: Path) -> None:
    store = s3rver.store(s3rver_bucket, cache_dir=tmp_path / "cache")
    found = store.features()
    assert (found.versioning, found.version_listing, found.conditional_create) == \
        ("Off", False, False)
    assert list((tmp_path / "cache").glob("s3-features-*.json"))  # cached per endpoint, bucket
    again = s3rver.store(s3rver_bucket, cache_dir=tmp_path / "cache")
    assert again.features() == found and again.keys("") == []  # no probe key left
    with pytest.raises(TaydashError, match="does not honour conditional writes") as exc:
        store.prepare_writes()
    assert exc.value.code == 3
    with pytest.raises(TaydashError, match="does not honour conditional writes"):
        store.put_bytes("manifests/v1.json", b"{}")
    assert store.keys("") == []


def test_a_delete_is_checked_on_every_backend(store: Store) -> None:
    w = store.put_bytes("db-backups/v1_20260101_000000-aaaa1111.dump", b"rows")
    store.delete("db-backups/v1_20260101_000000-aaaa1111.dump", w.version_id)
    assert not store.exists("db-backups/v1_20260101_000000-aaaa1111.dump")
    store.put_stream("vm-backups/v1_20260101_000000-aaaa1111/part", io.BytesIO(b"x" * 10))
    store.delete_prefix("vm-backups/v1_20260101_000000-aaaa1111/")
    assert store.keys("vm-backups/") == []


def _init(repos_dir: Path, s3: services.S3Server, bucket: str,
          *args: str) -> subprocess.CompletedProcess[str]:
    from testing.gitrepo import taydash

    (repos_dir / ".taydash.toml").write_text(
        f'[snapshots]\nstore = "s3://{bucket}/x"\n'
        f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n')
    return taydash("store", "init", *args, cwd=repos_dir, env={**os.environ, **s3.env()})


@pytest.mark.parametrize("server", ["s3", "s3rver"])
def test_store_init_prepares_a_bucket_and_asks_before_changing_one(
        request: pytest.FixtureRequest, server: str, tmp_path: Path) -> None:
    import secrets

    from testing.gitrepo import run, taydash

    s3 = request.getfixturevalue(server)
    work = tmp_path / "work"
    run("git", "init", "-q", work)
    fresh = f"taydash-init-{secrets.token_hex(4)}"
    proc = _init(work, s3, fresh)
    if server == "s3rver":  # no versioning at all: the bucket is made, and the gap is said
        assert proc.returncode == 3, proc.stderr
        assert "lacks versioning and conditional writes" in proc.stderr, proc.stderr
        assert "unsafe_single_writer = true" in proc.stderr
        assert s3.client().bucket_exists(fresh)
        # doctor no longer sends the user back to store init: the gap, as a warning.
        doctor = taydash("doctor", cwd=work, env={**os.environ, **s3.env()})
        line = next(ln for ln in doctor.stdout.splitlines() if "bucket versioning" in ln)
        assert line.startswith("WARN") and "keeps no versions" in line, doctor.stdout
        assert "store init" not in doctor.stdout.split(line, 1)[1].splitlines()[0], doctor.stdout
        return
    assert proc.returncode == 0 and f"created bucket {fresh}" in proc.stderr, proc.stderr
    assert s3.client().get_bucket_versioning(fresh).status == "Enabled"
    plain = f"taydash-plain-{secrets.token_hex(4)}"
    s3.client().make_bucket(plain)
    proc = _init(work, s3, plain)
    assert proc.returncode == 0 and "would turn versioning on" in proc.stderr
    assert s3.client().get_bucket_versioning(plain).status != "Enabled"  # not without --yes
    proc = _init(work, s3, plain, "--yes")
    assert proc.returncode == 0 and "turned versioning on" in proc.stderr
    assert s3.client().get_bucket_versioning(plain).status == "Enabled"
    locked = f"taydash-locked-{secrets.token_hex(4)}"
    proc = _init(work, s3, locked, "--object-lock-days", "7")
    assert proc.returncode == 0 and "with Object Lock" in proc.stderr
    s3.client().get_object_lock_config(locked)  # raises when there is none
