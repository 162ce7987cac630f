"""One suite every registered snapshot kind passes, on every store backend (restic runs one
suite over every backend; this is the same for kinds).

Each case drives a kind only through :class:`SnapshotKind` against the real services: take,
verify (shallow and deep), a flipped byte caught, an extra byte or object caught, restore
through a :class:`RestoreJob`, remove. A new kind gets its three helpers below and nothing
else changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from testing import services
from testing.snap import Snap

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.snapshots import kinds
from taydash_hooks.snapshots.kinds.base import RestoreJob, TakeJob
from taydash_hooks.snapshots.location import open_store
from taydash_hooks.snapshots.manifest import Artifact, Manifest
from taydash_hooks.store import Store


@dataclass(frozen=True)
class Case:
    """How the suite checks one kind: which object of an artifact to tamper with, which
    object would be "extra", and what a good restore looks like."""

    target: Callable[[Snap, Path], str]
    restored: Callable[[Snap, str], None]
    object_key: Callable[[Store, Artifact], str]
    extra_key: Callable[[Artifact], str | None]  # None: a single object, extra bytes instead


def _pg_restored(snap: Snap, target: str) -> None:
    try:
        assert snap.pg.psql("SELECT count(*) FROM readings", db=target) == "500"
    finally:
        snap.pg.drop_db(target)


def _vm_restored(snap: Snap, target: str) -> None:
    # A VictoriaMetrics started on what came back serves the series that was snapshotted.
    restored = services.start_vm(Path(target))
    try:
        rows = restored.export(f'snap_metric{{db="{snap.db}"}}', timeout=60)
        assert rows and rows[0]["values"] == [7], rows
    finally:
        services.stop_vm(restored)


def _config_restored(snap: Snap, target: str) -> None:
    assert (Path(target) / ".env").read_text() == "SECRET_SETTING=1\n"
    assert (Path(target) / "infra" / "app.conf").read_text() == "port = 80\n"


def _first_part(store: Store, art: Artifact) -> str:
    return next(k for k in store.keys(art.key) if not k.endswith(".ignore"))


CASES = {
    "postgres": Case(lambda s, tmp: f"{s.db}_conf_{secrets.token_hex(3)}", _pg_restored,
                     lambda store, art: art.key, lambda art: None),
    "victoriametrics": Case(lambda s, tmp: str(tmp / "vm-restored"), _vm_restored, _first_part,
                            lambda art: f"{art.key}planted/extra"),
    "config": Case(lambda s, tmp: str(tmp / "config-restored"), _config_restored,
                   lambda store, art: art.key, lambda art: None),
}


def test_every_registered_kind_has_a_conformance_case() -> None:
    assert set(kinds.registry()) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_kind_conformance(name: str, snap: Snap, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in snap.env.items():
        monkeypatch.setenv(var, value)
    repo = git.find_repo(snap.repos.work)
    cfg = config_mod.load(repo)
    store = open_store(repo, cfg)
    kind = kinds.get(name)
    case = CASES[name]
    tag = f"v9.{secrets.randbelow(1000)}.0"

    # take: at least one artifact, every object of it in the store
    arts = list(kind.take(TakeJob(cfg, store, tag, f"20260101_000000-{secrets.token_hex(4)}",
                                  600.0)))
    assert arts and all(a.kind == name for a in arts)
    main = arts[0]
    assert store.keys(main.key), "the artifact's objects are not in the store"

    # verify, shallow and deep
    for art in arts:
        checked = kind.verify(cfg, store, art, True)
        assert checked.ok, checked.problems
        assert checked.files >= 1 and checked.bytes > 0

    # restore, through the job a command builds
    doc = Manifest(tag=tag, tag_object="0" * 40, commit="0" * 40, artifacts=tuple(arts))
    target = case.target(snap, tmp_path)
    said = kind.restore(RestoreJob(cfg, store, doc, target, snap.repos.work, 600.0))
    assert said
    case.restored(snap, target)

    # a flipped byte is caught
    key = case.object_key(store, main)
    with store.open(key) as fh:
        data = bytearray(fh.read())
    data[len(data) // 2] ^= 0x01
    snap.raw_put(key, bytes(data))
    assert not kind.verify(cfg, store, main, False).ok

    # an extra object (or, for a single-object artifact, extra bytes) is caught
    data[len(data) // 2] ^= 0x01  # the byte is right again ...
    extra = case.extra_key(main)
    if extra is None:
        snap.raw_put(key, bytes(data) + b"\0")
    else:
        snap.raw_put(key, bytes(data))
        assert kind.verify(cfg, store, main, False).ok  # ... and only the extra object is wrong
        snap.raw_put(extra, b"planted")
    assert not kind.verify(cfg, store, main, False).ok

    # remove: nothing of any artifact of a run is left (a fresh run: on a versioned store,
    # remove deletes the versions the run wrote, never the ones planted after it above)
    arts = list(kind.take(TakeJob(cfg, store, tag, f"20260101_000001-{secrets.token_hex(4)}",
                                  600.0)))
    for art in arts:
        kind.remove(store, art)
        assert store.keys(art.key) == [], art.key
