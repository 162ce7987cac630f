"""`taydash release {major,minor,patch}`: the next semver tag with a changelog, then `backup`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.errors import TaydashError, refused
from taydash_hooks.lifecycle.backup import BackupPlan, Confirm, backup
from taydash_hooks.output import line, say

_SEMVER = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-.*)?")
_CONVENTIONAL = re.compile(r"(?P<type>[a-z]+)(?:\([^)]*\))?!?:\s*(?P<text>.+)")


def latest_version(root: Path, also: Iterable[str] = ()) -> tuple[tuple[int, int, int], str] | None:
    """The highest vX.Y.Z among the local tags (and the names in ``also``) and its tag.

    Pre-release suffixes are ignored for ordering; of equal versions the tag
    without a suffix wins.
    """
    best: tuple[tuple[int, int, int], bool, str] | None = None
    for t in [*git.out("tag", "--list", "v*", cwd=root).split(), *also]:
        m = _SEMVER.fullmatch(t)
        if m:
            key = ((int(m.group(1)), int(m.group(2)), int(m.group(3))), "-" not in t, t)
            if best is None or key[:2] > best[:2]:
                best = key
    return (best[0], best[2]) if best else None


def next_version(current: tuple[int, int, int] | None, part: str) -> str:
    major, minor, patch = current or (0, 0, 0)
    if part == "major":
        return f"v{major + 1}.0.0"
    if part == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"


def changelog(root: Path, since: str | None) -> str:
    """Commits since the last release, grouped by Conventional Commit type."""
    rng = [f"{since}..HEAD"] if since else ["HEAD"]
    subjects = git.out("log", "--format=%s", *rng, cwd=root).splitlines()
    groups: dict[str, list[str]] = {"Features": [], "Fixes": [], "Other": []}
    for subject in subjects:
        m = _CONVENTIONAL.fullmatch(subject)
        kind = m.group("type") if m else ""
        name = "Features" if kind == "feat" else "Fixes" if kind == "fix" else "Other"
        groups[name].append(m.group("text") if m and name != "Other" else subject)
    parts = []
    for name, items in groups.items():
        if items:
            parts.append(f"{name}:\n" + "\n".join(f"- {i}" for i in items))
    return "\n\n".join(parts) if parts else "(no commits since the last release)"


def release(cwd: Path, part: str, description: str | None, yes: bool, push: bool,
            confirm: Confirm, allow_empty: bool = False) -> int:
    """Tag the next semver release with a changelog message; then as `backup`."""
    repo = git.find_repo(cwd)
    local = latest_version(repo.root)
    if local and not allow_empty and not git.out("rev-list", "--max-count=1", f"{local[1]}..HEAD",
                                                 cwd=repo.root):
        raise refused(f"no commits since the last release {local[1]}; nothing to release "
                      "(--allow-empty releases anyway).")
    # Names taken elsewhere count too: a tag on the remote this clone has not fetched, and
    # a backup in the store (backed-up names are never reused). Learnt before anything
    # is created, so a release never tags, snapshots and then fails to push.
    taken = _names_elsewhere(repo, push)
    latest = latest_version(repo.root, taken)
    tag = next_version(latest[0] if latest else None, part)
    last = local[1] if local else None
    title = f"Release {tag}" + (f" - {description}" if description else "")
    message = f"{title}\n\n{changelog(repo.root, last)}\n"
    line(f"next release: {tag} (after {latest[1] if latest else 'none'})")
    line("tag message:")
    for text in message.rstrip().splitlines():
        line(f"  | {text}")
    if not yes and not confirm(f"Create {tag}{' and push it' if push else ''}?"):
        raise refused("release cancelled; nothing was created.")
    code = backup(cwd, BackupPlan(tag, message, push=push, yes=True), confirm)
    if code == 0 and not push:
        # The next step, said: verify and drill check the remote and a fresh clone of it.
        remote = _remote_or_origin(repo)
        say(f"{tag} is local only; push it when ready: git push {remote} HEAD {tag} "
            f"(then taydash verify {tag})")
    return code


def _remote_or_origin(repo: git.Repo) -> str:
    from taydash_hooks.lifecycle.verification import remote_name

    try:
        return remote_name(repo)
    except TaydashError:
        return "origin"


def _names_elsewhere(repo: git.Repo, push: bool) -> list[str]:
    """Release tag names on the remote and in the store; exit 3 when the remote is needed
    (``--push``) and cannot be asked."""
    from taydash_hooks import config as config_mod
    from taydash_hooks.errors import TaydashError
    from taydash_hooks.remote import ls_remote, upstream

    names: list[str] = []
    try:
        up = upstream(repo.root)
    except TaydashError:
        if push:
            raise
        up = None
    if up is not None:
        names += [ref[len("refs/tags/"):] for ref in ls_remote(repo.root, up.remote, "refs/tags/v*")]
    cfg = config_mod.load(repo)
    if cfg.snapshots is not None:
        from taydash_hooks.snapshots import manifest
        from taydash_hooks.snapshots.location import open_store

        names += manifest.all_tags(open_store(repo, cfg))
    return names
