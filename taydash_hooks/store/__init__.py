"""The storage interface and its backends, opened by URL: ``file://PATH`` or ``s3://BUCKET/PREFIX``.

Storage only: nothing here knows about configuration files, git, snapshot
kinds or their tools. Backends register in one table, keyed by scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from taydash_hooks.store.base import Properties, S3Options, Store, Version, Written

__all__ = ["Properties", "S3Options", "Store", "Version", "Written", "open_url"]


def _file(url: str, root: Path, s3: S3Options, env: Mapping[str, str] | None) -> Store:
    from taydash_hooks.store.local import FileStore

    path = Path(url[len("file://"):]).expanduser()
    return FileStore(path if path.is_absolute() else root / path)


def _s3(url: str, root: Path, s3: S3Options, env: Mapping[str, str] | None) -> Store:
    from taydash_hooks.store.s3 import S3Store

    bucket, _, prefix = url[len("s3://"):].partition("/")
    return S3Store(bucket, prefix, s3, env)


_BACKENDS: dict[str, Callable[[str, Path, S3Options, Mapping[str, str] | None], Store]] = {
    "file://": _file,
    "s3://": _s3,
}



def open_url(url: str, root: Path, s3: S3Options | None = None,
             env: Mapping[str, str] | None = None) -> Store:
    """The store at ``url``; a relative ``file://`` path is relative to ``root``."""
    for scheme, factory in _BACKENDS.items():
        if url.startswith(scheme):
            return factory(url, root, s3 or S3Options(), env)
    raise AssertionError(f"config validation let through store URL {url!r}")
