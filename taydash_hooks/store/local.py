"""``file://PATH``: a folder. Writes are atomic and a key is never overwritten."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from taydash_hooks.errors import environment, refused
from taydash_hooks.store.base import (
    CHUNK,
    HashingReader,
    Health,
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
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise environment(f"cannot create {path} in the file store ({exc.strerror}).") from None
        if not os.access(path, os.W_OK):
            raise environment(f"the file store folder {path} is not writable.")

    def put_stream(self, key: str, stream: BinaryIO) -> Written:
        final = self._path(key)
        self._writable_dir(final.parent)
        if final.exists():
            raise refused(f"{key} already exists in {self.url}; backups are never overwritten.")
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.partial")
        reader = HashingReader(stream)
        try:
            with tmp.open("wb") as out:
                for chunk in iter(lambda: reader.read(CHUNK), b""):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if tmp.stat().st_size != reader.size:
                raise environment(f"short write to {tmp}.")
            # link(2) fails when the final name exists: never overwrite, even racing.
            os.link(tmp, final)
        except FileExistsError:
            raise refused(f"{key} already exists in {self.url}; backups are never overwritten.") \
                from None
        except OSError as exc:
            raise environment(f"cannot write {key} to {self.url} ({exc.strerror}).") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
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
        with fh:
            yield fh

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                keys.append(path.relative_to(self.root).as_posix())
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)

    def clean_partial(self, prefix: str) -> int:
        folder, _, start = self._path(prefix).as_posix().rpartition("/")
        count = 0
        for path in Path(folder).glob(f".{start}*.partial") if Path(folder).is_dir() else []:
            if from_attempt(f".{start}", path.name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    count += 1
        return count

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def versions(self, key: str) -> list[Version]:
        path = self._path(key)
        if not path.exists():
            return []
        st = path.stat()
        modified = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
        return [Version(key, "null", st.st_size, modified, True)]

    def promote(self, key: str, version_id: str) -> Written:
        raise refused("the file store keeps one version of each key; nothing to promote.")

    def properties(self) -> Properties:
        return Properties("file", local_root=self.root)

    def health(self) -> Health:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Health(False, f"{self.url}: {exc.strerror}", fix=f"create {self.root}")
        if not os.access(self.root, os.W_OK):
            return Health(False, f"{self.url} is not writable", fix=f"make {self.root} writable")
        return Health(True, self.url)
