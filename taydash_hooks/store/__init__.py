"""Opening the configured store by URL: ``file://PATH`` (default) or ``s3://BUCKET/PREFIX``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from taydash_hooks.config import Config, S3Config
from taydash_hooks.git import Repo
from taydash_hooks.store.base import Store, Version, Written

__all__ = ["Store", "Version", "Written", "default_url", "open_store"]


def default_url(repo: Repo) -> str:
    return f"file://{repo.state_dir / 'backups'}"


def _file(url: str, cfg: Config, env: Mapping[str, str] | None) -> Store:
    from taydash_hooks.store.local import FileStore

    return FileStore(cfg.path(url[len("file://"):]))


def _s3(url: str, cfg: Config, env: Mapping[str, str] | None) -> Store:
    from taydash_hooks.store.s3 import S3Store

    bucket, _, prefix = url[len("s3://"):].partition("/")
    s3cfg = cfg.snapshots.s3 if cfg.snapshots and cfg.snapshots.s3 else S3Config()
    return S3Store(bucket, prefix, s3cfg, env)


_FACTORIES: dict[str, Callable[[str, Config, Mapping[str, str] | None], Store]] = {
    "file://": _file,
    "s3://": _s3,
}


def open_store(repo: Repo, cfg: Config, env: Mapping[str, str] | None = None) -> Store:
    """The store ``[snapshots] store`` names (default: under the git common dir)."""
    url = (cfg.snapshots.store if cfg.snapshots else "") or default_url(repo)
    for scheme, factory in _FACTORIES.items():
        if url.startswith(scheme):
            return factory(url, cfg, env)
    raise AssertionError(f"config validation let through store URL {url!r}")
