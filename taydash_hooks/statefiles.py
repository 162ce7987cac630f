"""Files under ``<git common dir>/taydash``: never through a symlink, always private.

The repository may belong to someone else (``safe.directory`` lets us in); a
symlink planted there must not make us truncate or overwrite a file of the
user running us. Every state file is opened with ``O_NOFOLLOW`` (a symlink is
refused with ELOOP) and created 0600; state folders are 0700 and refused when
they are symlinks.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from taydash_hooks.errors import environment

_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def private_dir(path: Path) -> Path:
    """``path`` as a real folder (created 0700); exit 3 when it is a symlink or not a folder."""
    # Each missing folder on the way is made 0700 itself (mkdir's parents get the umask's
    # 0755: .git/taydash would be readable by everyone).
    missing = []
    at = path
    while not os.path.lexists(at) and at != at.parent:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise environment(f"cannot create {folder} ({exc.strerror}).") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise environment(f"{path} is a symlink or not a folder; taydash refuses to use it "
                          "(remove it).")
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a state file: never through a symlink, created 0600."""
    private_dir(path.parent)
    try:
        return os.open(path, flags | _NOFOLLOW, 0o600)
    except OSError as exc:
        raise environment(f"cannot open {path} ({exc.strerror}; taydash never writes through "
                          "a symlink there).") from None


def read_private(path: Path, limit: int = 64 * 1024 * 1024) -> str:
    """The text of a state file; OSError when it is missing or a symlink."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit).decode("utf-8", "replace")


def write_private(path: Path, data: bytes) -> None:
    """Replace a state file atomically: a new 0600 file renamed over it (rename never follows
    a symlink at the destination; it replaces the link itself)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
