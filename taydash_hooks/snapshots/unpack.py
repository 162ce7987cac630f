"""Unpacking a config bundle without ever writing outside the destination.

A bundle comes from the store, which others can write to. ``tarfile``'s
``data`` filter is not enough on the Pythons we support (CVE-2025-4517: a
symlink chain longer than PATH_MAX walks out of it on 3.11.7), so every
member is checked here and written by us:

- names: no absolute path, no ``..``, no NUL, nothing but files, directories,
  symlinks and hard links (devices and FIFOs are refused);
- writes go through directory file descriptors opened with ``O_NOFOLLOW``
  from the destination down, so no write ever follows a symlink, whatever the
  archive planted earlier;
- a symlink's target must be relative, and once everything is unpacked every
  symlink must resolve inside the destination (so chains cannot escape);
- a hard link may only name a regular file unpacked earlier from the bundle
  (it becomes a copy);
- files come out 0600 (0700 when executable), directories 0700.

The caller unpacks into a fresh, empty destination and empties it when
:class:`Refused` is raised: a refused bundle leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from taydash_hooks.errors import TaydashError, refused

MAX_MEMBERS = 100_000
CHUNK = 1024 * 1024


class Refused(TaydashError):
    """A member of the bundle that would leave the destination or is not plain data."""


def _refuse(member: str, why: str) -> Refused:
    exc = refused(f"the config bundle holds {member[:200]!r}, which {why}; nothing was restored.")
    return Refused(exc.message, exc.code)


def _parts(name: str) -> list[str]:
    """The path components of a member name, refusing anything that could leave the root."""
    if "\0" in name:
        raise _refuse(name, "has a NUL byte in its name")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise _refuse(name, "is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _refuse(name, "climbs out with '..'")
    if not parts:
        raise _refuse(name or "(empty)", "has no name")
    return parts


@contextlib.contextmanager
def _dir_fd(root: int, parts: list[str], member: str) -> Iterator[int]:
    """An fd of ``root/parts...``, creating missing folders 0700, never following a symlink."""
    fd = os.dup(root)
    try:
        for part in parts:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=fd)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except (NotADirectoryError, OSError) as exc:
                raise _refuse(member, f"goes through {part!r}, which is not a plain folder "
                                      f"({exc.strerror})") from None
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _write(root: int, parts: list[str], member: str, src: IO[bytes], mode: int) -> None:
    with _dir_fd(root, parts[:-1], member) as parent:
        try:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600, dir_fd=parent)
        except FileExistsError:
            raise _refuse(member, "is in the bundle twice or replaces a link") from None
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
            os.fchmod(out.fileno(), 0o700 if mode & 0o100 else 0o600)


def _read(root: int, parts: list[str], member: str) -> BinaryIO:
    with _dir_fd(root, parts[:-1], member) as parent:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent)
    return os.fdopen(fd, "rb")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def unpack(stream: IO[bytes], dest: Path) -> list[str]:
    """Unpack the tar.gz ``stream`` into the empty folder ``dest``; the names unpacked.

    Raises :class:`Refused` (exit 1) at the first member that is not plain
    data inside ``dest``; the caller empties ``dest`` then.
    """
    root_real = os.path.realpath(dest)
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    files: dict[str, list[str]] = {}  # regular files unpacked so far, for hard links
    links: list[tuple[str, list[str]]] = []
    names: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise _refuse(member.name, f"is past the limit of {MAX_MEMBERS} members")
                parts = _parts(member.name)
                key = "/".join(parts)
                if member.isdir():
                    with _dir_fd(root, parts, member.name):
                        pass
                elif member.isreg():
                    src = tar.extractfile(member)
                    assert src is not None
                    _write(root, parts, member.name, src, member.mode)
                    files[key] = parts
                elif member.issym():
                    target = member.linkname
                    if not target or target.startswith("/") or "\0" in target:
                        raise _refuse(member.name, f"is a symlink to {target!r} outside the bundle")
                    lexical = os.path.normpath(os.path.join(os.path.dirname(key), target))
                    if lexical == ".." or lexical.startswith("../"):
                        raise _refuse(member.name, f"is a symlink to {target!r} outside the bundle")
                    with _dir_fd(root, parts[:-1], member.name) as parent:
                        try:
                            os.symlink(target, parts[-1], dir_fd=parent)
                        except FileExistsError:
                            raise _refuse(member.name, "is in the bundle twice") from None
                    links.append((member.name, parts))
                elif member.islnk():
                    target_parts = _parts(member.linkname)
                    source = files.get("/".join(target_parts))
                    if source is None:
                        raise _refuse(member.name, f"is a hard link to {member.linkname!r}, "
                                                   "which is no file of the bundle")
                    with _read(root, source, member.name) as src:
                        _write(root, parts, member.name, src, member.mode)
                    files[key] = parts
                else:
                    kind = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                            tarfile.FIFOTYPE: "a FIFO"}.get(member.type, "not a file or folder")
                    raise _refuse(member.name, f"is {kind}")
                names.append(key)
        # Every link is judged where it really leads, with all the others in place:
        # a chain of links that each look local cannot reach out.
        for name, parts in links:
            try:
                # strict: a chain the kernel could not follow (too long, a loop, past
                # PATH_MAX) is refused instead of being judged by its spelling.
                real = os.path.realpath(os.path.join(dest, *parts), strict=True)
            except OSError as exc:
                raise _refuse(name, f"is a symlink that cannot be resolved ({exc.strerror})") from None
            if not _inside(real, root_real):
                raise _refuse(name, "is a symlink that resolves outside the destination")
        with contextlib.suppress(OSError):
            for dirpath, dirnames, _ in os.walk(dest):
                for d in dirnames:
                    path = os.path.join(dirpath, d)
                    if not os.path.islink(path) and stat.S_ISDIR(os.lstat(path).st_mode):
                        os.chmod(path, 0o700)
    finally:
        os.close(root)
    return names
