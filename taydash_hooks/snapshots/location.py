"""Which store a repository's backups live in: ``[snapshots] store``, else under the git dir."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.git import Repo
from taydash_hooks.output import say
from taydash_hooks.store import S3Options, Store, open_url


def default_url(repo: Repo) -> str:
    return f"file://{repo.state_dir / 'backups'}"


def open_store(repo: Repo, cfg: Config, env: Mapping[str, str] | None = None) -> Store:
    """The store ``[snapshots] store`` names (default: under the git common dir)."""
    url = (cfg.snapshots.store if cfg.snapshots else "") or default_url(repo)
    s3 = cfg.snapshots.s3 if cfg.snapshots and cfg.snapshots.s3 else None
    options = S3Options(s3.endpoint, s3.secure, s3.region, s3.object_lock_days,
                        s3.unsafe_single_writer, repo.state_dir / "stores") if s3 else \
        S3Options(cache_dir=repo.state_dir / "stores")
    store = open_url(url, cfg.root, options, env)
    root = store.properties().local_root
    if root is not None and repo.toplevel is not None:
        exclude_from_git(repo, root)
    return store


def exclude_from_git(repo: Repo, folder: Path) -> None:
    """Keep a file store inside the working tree out of git: its dumps are never committed,
    and `backup`/`release` do not see an unclean tree."""
    assert repo.toplevel is not None
    try:
        rel = folder.resolve().relative_to(repo.toplevel.resolve())
    except ValueError:
        return  # outside the working tree
    if not rel.parts or rel.parts[0] == ".git":
        return
    ignored = git.git("check-ignore", "-q", "--no-index", "--", f"{rel.as_posix()}/",
                      cwd=repo.toplevel, check=False)
    if ignored.returncode == 0:
        return
    exclude = repo.common_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as fh:
        fh.write(f"# taydash: the backup store is never committed\n/{rel.as_posix()}/\n")
    say(f"added /{rel.as_posix()}/ to {exclude}: the backup store inside the working tree is "
        "kept out of git.")


def open_repo_store(cwd: Path) -> tuple[Repo, Config, Store]:
    """The repository around ``cwd``, its configuration and its store."""
    from taydash_hooks import config as config_mod
    from taydash_hooks.git import find_repo

    repo = find_repo(cwd)
    cfg = config_mod.load(repo)
    return repo, cfg, open_store(repo, cfg)
