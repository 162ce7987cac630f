"""``file://PATH``: a folder. Writes are atomic and a key is never overwritten."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from taydash_hooks.errors import TaydashError, environment, refused
from taydash_hooks.store.base import (
    CHUNK,
    Features,
    HashingReader,
    Health,
    KeyTaken,
    Properties,
    Version,
    Written,
    check_key,
    from_attempt,
)


class FileStore:
    """Backups in a local folder (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _writable_dir(self, path: Path) -> None:
        """Create ``path`` and its missing parents 0700 (whatever the umask)."""
        missing = []
        probe = path
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        try:
            for folder in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    folder.mkdir(mode=0o700)
                    os.chmod(folder, 0o700)
        except OSError as exc:
            raise environment(f"cannot create {path} in the file store ({exc.strerror}).") from None
        if not os.access(path, os.W_OK):
            raise environment(f"the file store folder {path} is not writable.")

    def put_stream(self, key: str, stream: BinaryIO) -> Written:
        final = self._path(key)
        self._writable_dir(final.parent)
        if final.exists():
            raise KeyTaken(key, self.url)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(16)}.partial")
        reader = HashingReader(stream)
        try:
            # 0600 from the first byte: a dump is never readable by other local users.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: reader.read(CHUNK), b""):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if tmp.stat().st_size != reader.size:
                raise environment(f"short write to {tmp}.")
            # link(2) fails when the final name exists: never overwrite, even racing.
            os.link(tmp, final)
        except FileExistsError:
            raise KeyTaken(key, self.url) from None
        except OSError as exc:
            raise environment(f"cannot write {key} to {self.url} ({exc.strerror}).") from None
        finally:
            # OSError, not just FileNotFoundError: an error here must never hide the real one.
            with contextlib.suppress(OSError):
                tmp.unlink()
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return Written(key, reader.size, reader.sha.hexdigest())

    def put_bytes(self, key: str, data: bytes) -> Written:
        import io

        return self.put_stream(key, io.BytesIO(data))

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    @contextlib.contextmanager
    def open(self, key: str, version_id: str | None = None) -> Iterator[BinaryIO]:
        if version_id not in (None, "", "null"):
            raise refused("the file store keeps one version of each key.")
        try:
            fh = self._path(key).open("rb")
        except FileNotFoundError:
            raise refused(f"{key} does not exist in {self.url}.") from None
        except IsADirectoryError:  # the folder is someone else's to write: not an object
            raise refused(f"{key} in {self.url} is a folder, not a stored object.") from None
        except OSError as exc:
            raise environment(f"cannot read {key} from {self.url} ({exc.strerror}).") from None
        with fh:
            yield fh

    def keys(self, prefix: str) -> list[str]:
        # A string prefix, as S3 lists: "db-backups/v1" finds db-backups/v1_..., not only a
        # folder of that name.
        folder = prefix if not prefix or prefix.endswith("/") else prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        for attempt in range(4):  # a killed writer's last files can land a moment later
            shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)
            if not self.keys(prefix):
                return
            time.sleep(0.5 * (attempt + 1))
        raise environment(f"{prefix} still holds objects in {self.url} after it was deleted.")

    def clean_partial(self, prefix: str) -> int:
        folder, _, start = self._path(prefix).as_posix().rpartition("/")
        count = 0
        for path in Path(folder).glob(f".{start}*.partial") if Path(folder).is_dir() else []:
            if from_attempt(f".{start}", path.name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    count += 1
        return count

    def delete(self, key: str, version_id: str | None = None) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a folder planted under the key is never removed with it
            raise environment(f"cannot delete {key} from {self.url} ({exc.strerror}).") from None
        if self._path(key).exists():
            raise environment(f"{key} is still in {self.url} after it was deleted.")

    def features(self, refresh: bool = False) -> Features:
        # link(2) creates a name only when it is free: a conditional create of its own.
        return Features("n/a", version_listing=True, conditional_create=True)

    def prepare_writes(self) -> None:
        return None

    def init(self, lock_days: int, apply: bool) -> list[str]:
        """Create the folder (0700); a folder keeps no versions and has no Object Lock."""
        existed = self.root.is_dir()
        self._writable_dir(self.root)
        said = [f"{self.url} exists" if existed else f"created {self.url} (mode 0700)"]
        if lock_days:
            said.append("a file:// store has no Object Lock: object_lock_days applies to S3 only")
        return said

    def adopt(self, prefix: str) -> None:
        base = self._path(prefix.rstrip("/"))
        for dirpath, _, filenames in os.walk(base):
            os.chmod(dirpath, 0o700)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o600, follow_symlinks=False)

    def versions(self, key: str) -> list[Version]:
        path = self._path(key)
        if not path.exists():
            return []
        st = path.stat()
        modified = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
        return [Version(key, "null", st.st_size, modified, True)]

    def promote(self, key: str, version_id: str) -> Written:
        raise refused("the file store keeps one version of each key; nothing to promote.")

    def retained_until(self, key: str, version_id: str | None = None) -> datetime | None:
        return None  # a folder has no Object Lock

    def properties(self) -> Properties:
        return Properties("file", local_root=self.root)

    def health(self) -> Health:
        try:
            self._writable_dir(self.root)
        except TaydashError as exc:
            return Health(False, exc.message, fix=f"create {self.root} (mode 0700)")
        if not os.access(self.root, os.W_OK):
            return Health(False, f"{self.url} is not writable", fix=f"make {self.root} writable")
        open_to = [str(p) for p in (self.root, *self.root.rglob("*"))
                   if not p.is_symlink() and p.stat().st_mode & 0o077]
        if open_to:
            return Health(False, f"{self.url} is readable by other users ({open_to[0]}"
                                 + (f" and {len(open_to) - 1} more" if len(open_to) > 1 else "") + ")",
                          fix=f"chmod -R go-rwx {self.root}")
        return Health(True, self.url)
