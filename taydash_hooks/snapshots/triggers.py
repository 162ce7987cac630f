"""When snapshots happen by themselves: which tags want one, the name check at `git tag`, the
detached background job and its status. Taking one (and what follows it) is
:mod:`taydash_hooks.lifecycle.snapshot`."""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import time
from pathlib import Path

from taydash_hooks import git, process
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError
from taydash_hooks.output import Word, say
from taydash_hooks.snapshots import manifest
from taydash_hooks.statefiles import open_private, private_dir, write_private

STATUS_FILE = "snapshot-status.json"
# Set by `taydash backup`/`release` around their own `git tag`: they take the snapshot
# themselves right after, once; the tag's hook leaves it to them.
DEFER_ENV = "TAYDASH_SNAPSHOT_DEFERRED"


def wanted(cfg: Config, tag: str) -> bool:
    return cfg.snapshots is not None and any(
        fnmatch.fnmatchcase(tag, p) for p in cfg.snapshots.on_tag)


def record_status(repo: git.Repo, tag: str, ok: bool, message: str, log: str | None) -> None:
    """What `taydash health` shows as the last background snapshot result."""
    write_private(repo.state_dir / STATUS_FILE, json.dumps(
        {"tag": tag, "ok": ok, "message": message, "log": log,
         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())


def start_background(repo: git.Repo, tag: str) -> Path:
    """Detach ``python -m taydash_hooks.lifecycle.job TAG``; its output goes to a log file."""
    logs = private_dir(repo.state_dir / "logs")
    # Bounded: a file name has 255 bytes, a tag name may be longer.
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in tag)[:100]
    log_path = logs / f"snapshot-{safe}-{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}.log"
    with os.fdopen(open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as out:
        # A fixed argv: the tag is one argument, never shell text.
        process.start_detached([sys.executable, "-m", "taydash_hooks.lifecycle.job",
                                str(log_path), tag], cwd=repo.root, env=git.no_git_env(),
                               output=out)
    return log_path


def names_free_at_creation(repo: git.Repo, cfg: Config, rows: list[tuple[str, str, str]]) -> int:
    """reference-transaction ``prepared``: refuse a tag whose name a backup of another tag holds."""
    from taydash_hooks.snapshots.binding import name_taken
    from taydash_hooks.snapshots.location import open_store

    try:
        store = open_store(repo, cfg)
        names = [(ref[len("refs/tags/"):], new) for _, new, ref in rows]
        problems = [p for tag, new in names
                    if (p := name_taken(repo, store, tag, manifest.load(store, tag), new))]
    except TaydashError as exc:
        # Offline: creating a tag stays possible; pre-push checks again and fails closed.
        say(f"{Word.WARNING}: could not check the store for backups of this name ({exc.message}).")
        return Exit.OK
    for problem in problems:
        say(f"tag {Word.REFUSED}: {problem}")
    return Exit.REFUSED if problems else Exit.OK
