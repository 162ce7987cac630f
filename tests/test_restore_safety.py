"""restore config: a hostile bundle never writes outside its destination and leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import keys, services
from testing.gitrepo import Repos
from testing.snap import Snap

Member = tuple[tarfile.TarInfo, bytes]


def _file(name: str, data: bytes = b"x\n") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _dir(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, b""


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def _special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, b""


def _cve_2025_4517_chain() -> list[Member]:
    """The published shape: symlinks through long folder names, past PATH_MAX, then out."""
    comp = "d" * 247
    members: list[Member] = []
    path, steps = "", "abcdefghijklmnop"
    for step in steps:
        members.append(_dir(os.path.join(path, comp)))
        members.append(_link(os.path.join(path, step), comp))
        path = os.path.join(path, comp)
    long_link = os.path.join(*steps, "l" * 254)
    members.append(_link(long_link, "../" * len(steps)))
    members.append(_link("escape", f"{long_link}/../outside"))
    members.append(_file("escape/pwned", b"owned\n"))
    return members


# Where an absolute member would land: a name of this run's own, so nothing left by an
# earlier run (or another user) can make the check pass or fail.
ABSOLUTE = f"/tmp/taydash-pwned-{secrets.token_hex(8)}"

CASES: dict[str, list[Member]] = {
    "absolute name": [_file(ABSOLUTE)],
    "dot-dot": [_file("ok.txt"), _file("../outside/pwned")],
    "symlink out": [_link("out", "../outside")],
    "absolute symlink": [_link("out", "/etc")],
    "write through a symlink": [_dir("real"), _link("via", "real"), _file("via/f")],
    "chain that only looks local": [_dir("a"), _dir("a/b"), _link("a/b/up", "../.."),
                                    _link("a/b/esc", "up/../outside")],
    "hard link out": [_link("h", "/etc/passwd", tarfile.LNKTYPE)],
    "hard link to no member": [_link("h", "outside/pwned", tarfile.LNKTYPE)],
    "character device": [_special("null", tarfile.CHRTYPE)],
    "block device": [_special("disk", tarfile.BLKTYPE)],
    "fifo": [_special("pipe", tarfile.FIFOTYPE)],
    "long symlink chain (CVE-2025-4517)": _cve_2025_4517_chain(),
}


def _bundle(members: list[Member]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    proc = subprocess.run(["gpg", "--batch", "--no-tty", "--trust-model", "always", "--encrypt",
                           "--recipient", "trusted@example.test", "--output", "-"],
                          input=raw.getvalue(), capture_output=True, check=True)
    return proc.stdout


@pytest.fixture
def bundled(repos: Repos, postgres: services.Postgres, vm: services.VictoriaMetrics,
            gnupghome: keys.Keyring, tmp_path: Path) -> Iterator[Snap]:
    snap = Snap(repos, postgres, vm, f"file://{tmp_path / 'store'}", None, dict(os.environ))
    assert snap.tag("v0.1.0").returncode == 0
    yield snap
    postgres.drop_db(snap.db)


def _replace_bundle(snap: Snap, data: bytes) -> None:
    """What someone with write access to the store does: new bundle, manifest to match."""
    doc = json.loads(snap.raw_get("manifests/v0.1.0.json"))
    art = next(a for a in doc["artifacts"] if a["kind"] == "config")
    snap.raw_put(art["key"], data)
    art["sha256"], art["size"] = hashlib.sha256(data).hexdigest(), len(data)
    snap.raw_put("manifests/v0.1.0.json", json.dumps(doc).encode())


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_bundle_is_refused_and_leaves_nothing(bundled: Snap, tmp_path: Path,
                                                        case: str) -> None:
    _replace_bundle(bundled, _bundle(CASES[case]))
    work = tmp_path / "restore"
    work.mkdir()
    (work / "outside").mkdir()  # what an escape would reach: the destination's neighbour
    dest = work / "dest"
    proc = bundled.cli("restore", "config", "v0.1.0", "--dest", str(dest))
    assert proc.returncode == 1, (case, proc.stderr)
    assert "the config bundle holds" in proc.stderr and "nothing was restored" in proc.stderr, \
        proc.stderr
    assert "Traceback" not in proc.stderr
    assert not dest.exists()  # the folder restore made is gone too
    assert list((work / "outside").iterdir()) == []
    assert not Path(ABSOLUTE).exists()


def test_a_plain_bundle_with_inner_links_restores_privately(bundled: Snap, tmp_path: Path) -> None:
    members = [_dir("infra"), _file("infra/app.conf", b"port = 80\n"),
               _link("infra/current.conf", "app.conf"), _link("infra/same.conf", "infra/app.conf",
                                                            tarfile.LNKTYPE),
               _file(".env", b"SECRET=1\n")]
    _replace_bundle(bundled, _bundle(members))
    dest = tmp_path / "dest"
    old = os.umask(0)
    try:
        proc = bundled.cli("restore", "config", "v0.1.0", "--dest", str(dest))
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "infra" / "current.conf").read_text() == "port = 80\n"
    assert (dest / "infra" / "current.conf").is_symlink()
    assert (dest / "infra" / "same.conf").read_text() == "port = 80\n"
    assert (dest / ".env").stat().st_mode & 0o777 == 0o600
    assert (dest / "infra").stat().st_mode & 0o777 == 0o700
