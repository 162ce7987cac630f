"""Which store a repository's backups live in: ``[snapshots] store``, else under the git dir."""

from __future__ import annotations

from collections.abc import Mapping

from taydash_hooks.config import Config
from taydash_hooks.git import Repo
from taydash_hooks.store import S3Options, Store, open_url


def default_url(repo: Repo) -> str:
    return f"file://{repo.state_dir / 'backups'}"


def open_store(repo: Repo, cfg: Config, env: Mapping[str, str] | None = None) -> Store:
    """The store ``[snapshots] store`` names (default: under the git common dir)."""
    url = (cfg.snapshots.store if cfg.snapshots else "") or default_url(repo)
    s3 = cfg.snapshots.s3 if cfg.snapshots and cfg.snapshots.s3 else None
    options = S3Options(s3.endpoint, s3.secure, s3.region, s3.object_lock_days) if s3 else None
    return open_url(url, cfg.root, options, env)
