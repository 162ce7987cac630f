"""`taydash backup` and `taydash release`: the team's manual backup page as commands.

Every step prints one line as it starts and ends and the first failure
stops the run with a sentence saying what to do. A failure rolls back what
this run created (the tag, the snapshots it took): the repository is left as
it was before the command.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taydash_hooks import config as config_mod
from taydash_hooks import git, manifest
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError, refused, usage
from taydash_hooks.gate import dirty_files
from taydash_hooks.output import say
from taydash_hooks.remote import ls_remote, upstream
from taydash_hooks.tag_naming import naming_problem

Confirm = Callable[[str], bool]


@contextmanager
def step(title: str) -> Iterator[None]:
    """``-> title`` when it starts, ``ok``/``FAILED`` with the time when it ends."""
    say(f"-> {title}")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"   FAILED: {title}")
        raise
    say(f"   ok ({time.monotonic() - start:.1f} s)")


@dataclass
class Rollback:
    """What this run created, undone in reverse order on failure."""

    undo: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def add(self, what: str, fn: Callable[[], object]) -> None:
        self.undo.append((what, fn))

    def run(self) -> None:
        for what, fn in reversed(self.undo):
            try:
                fn()
                say(f"   rolled back: {what}")
            except Exception as exc:  # keep undoing the rest
                say(f"   could not roll back {what}: {exc}")


def check_name(cfg: Config, tag: str) -> None:
    naming = cfg.tags.naming if cfg.tags else "convention"
    problem = naming_problem(tag, naming)
    if problem:
        raise usage(problem + ".")


def _validate_head(repo: git.Repo, cfg: Config) -> None:
    if cfg.validate is None or not cfg.validate.commands:
        say("   (no [validate] commands configured)")
        return
    from taydash_hooks.gate import Gate, resolve_targets

    head = git.out("rev-parse", "HEAD", cwd=repo.root)
    target = resolve_targets([head], repo.root)[head]
    assert target is not None
    verdict = Gate(repo, cfg.validate).check(target)
    say(f"   HEAD {head[:7]}  {verdict.summary()}")
    if not verdict.ok:
        raise refused(f"validation of HEAD failed ({verdict.status}); fix it and commit first.")


def _create_tag(repo: git.Repo, tag: str, message: str) -> str:
    # The hooks run here: the policy at creation, then (foreground) the snapshots.
    from taydash_hooks.snapshots import snapshot_timeout

    res = git.git("tag", "-s", "-m", message, "--", tag, cwd=repo.root, check=False,
                  timeout=snapshot_timeout() + 600)
    for line in res.err.splitlines():
        say(f"   | {line}")
    if res.returncode != 0:
        err = res.err.strip()
        if "refused" in err or "reference-transaction" in err:
            raise refused(f"the tag policy refused {tag}: {err.splitlines()[0] if err else ''}")
        raise refused(
            f"git could not sign tag {tag} (signing key missing or locked?): "
            f"{err.splitlines()[-1] if err else 'no output'}. Set user.signingkey "
            "(and gpg.format=ssh for an SSH key) and unlock the key, then rerun.")
    return git.out("rev-parse", f"refs/tags/{tag}", cwd=repo.root)


def _snapshots(repo: git.Repo, cfg: Config, tag: str, rollback: Rollback) -> dict[str, Any] | None:
    """Take the snapshots (or confirm the tag's hook took them); undone with the tag."""
    if cfg.snapshots is None:
        say("   (no [snapshots] configured)")
        return None
    from taydash_hooks.snapshots import take
    from taydash_hooks.store import open_store

    store = open_store(repo, cfg)
    # Registered first: a snapshot the reference-transaction hook took, or a
    # failed one here, is removed with the tag on any failure.
    rollback.add(f"snapshots of {tag}", lambda: _remove_backup(store, tag))
    return take(repo, cfg, tag, store=store)


def _no_backup_yet(repo: git.Repo, cfg: Config, tag: str) -> None:
    if cfg.snapshots is None:
        return
    from taydash_hooks.store import open_store

    store = open_store(repo, cfg)
    if manifest.load(store, tag) is not None:
        raise refused(f"{store.url} already holds a backup named {tag} (of an earlier tag); "
                      "choose a new tag name.")


def _remove_backup(store: Any, tag: str) -> None:
    from taydash_hooks.snapshots import remove_artifact

    doc = manifest.load(store, tag)
    if doc is None:
        return
    store.delete(manifest.key(tag))  # the manifest first: without it the rest is no backup
    for art in manifest.artifacts(doc):
        remove_artifact(store, art)


@dataclass(frozen=True)
class BackupPlan:
    tag: str
    message: str
    push: bool = True
    yes: bool = False


def backup(cwd: Path, plan: BackupPlan, confirm: Confirm) -> int:
    """The whole manual backup; see the module docstring."""
    repo = git.find_repo(cwd)
    if repo.bare:
        raise usage("backup needs a work tree; this is a bare repository.")
    cfg = config_mod.load(repo)
    root = repo.root
    tag = plan.tag
    with step("checking the branch and its remote"):
        up = upstream(root) if plan.push else None
    with step("checking the working tree is clean"):
        dirty = dirty_files(root)
        if dirty:
            raise refused("uncommitted changes: " + ", ".join(dirty[:10])
                          + (" ..." if len(dirty) > 10 else "") + "; commit or stash them first.")
    with step(f"checking the tag name {tag}"):
        check_name(cfg, tag)
        if git.rev_parse(f"refs/tags/{tag}", root):
            raise refused(f"tag {tag} already exists locally; choose a new name.")
        _no_backup_yet(repo, cfg, tag)
    with step("validating HEAD"):
        _validate_head(repo, cfg)
    head = git.out("rev-parse", "HEAD", cwd=root)
    if up is not None:
        with step(f"fetching {up.remote}"):
            # --no-tags: a refused backup must not leave new local tags behind.
            res = git.git("fetch", "--quiet", "--no-tags", "--", up.remote, cwd=root, check=False,
                          timeout=300)
            if res.returncode != 0:
                raise TaydashError(f"remote {up.remote} is unreachable: "
                                   f"{(res.err.strip().splitlines() or ['?'])[-1]}",
                                   Exit.ENVIRONMENT)
        with step(f"checking HEAD is not behind {up.remote}/{up.branch}"):
            theirs = git.rev_parse(f"refs/remotes/{up.remote}/{up.branch}", root)
            if theirs and not git.is_ancestor(theirs, head, root):
                state = "behind" if git.is_ancestor(head, theirs, root) else "diverged from"
                raise refused(f"{up.branch} is {state} {up.remote}/{up.branch}; "
                              f"pull (git pull --rebase) and rerun.")
            on_remote = ls_remote(root, up.remote, f"refs/tags/{tag}")
            if on_remote:
                raise refused(f"tag {tag} already exists on {up.remote} "
                              f"({next(iter(on_remote.values()))[:12]}); choose a new name.")
    rollback = Rollback()
    try:
        with step(f"creating signed tag {tag}"):
            tag_oid = _create_tag(repo, tag, plan.message)
            rollback.add(f"tag {tag}", lambda: git.git("tag", "-d", "--", tag, cwd=root))
        with step("taking the snapshots"):
            doc = _snapshots(repo, cfg, tag, rollback)
        if up is not None:
            question = f"Push HEAD ({head[:7]}) to {up.remote}/{up.branch} and tag {tag}?"
            if not plan.yes and not confirm(question):
                raise refused("push cancelled; nothing was pushed.")
            with step(f"pushing HEAD to {up.remote}/{up.branch}"):
                _push(root, up.remote, f"HEAD:refs/heads/{up.branch}")
            with step(f"pushing tag {tag}"):
                _push(root, up.remote, f"refs/tags/{tag}")
            with step(f"confirming both on {up.remote}"):
                seen = ls_remote(root, up.remote, f"refs/heads/{up.branch}", f"refs/tags/{tag}")
                if seen.get(f"refs/heads/{up.branch}") != head:
                    raise refused(f"{up.remote} does not show {up.branch} at {head[:12]}.")
                if seen.get(f"refs/tags/{tag}") != tag_oid:
                    raise refused(f"{up.remote} does not show {tag} as {tag_oid[:12]}.")
    except BaseException:
        rollback.run()
        raise
    say("")
    say(f"backup {tag} done")
    say(f"  tag       {tag} ({tag_oid[:12]})")
    say(f"  commit    {head}")
    if doc is not None:
        say(f"  manifest  {manifest.key(tag)}")
        for art in manifest.artifacts(doc):
            say(f"  artifact  {art.get('kind')}: {art.get('key')} ({art.get('size')} bytes)")
    if up is not None:
        say(f"  remote    {up.remote} ({up.branch} and {tag} confirmed)")
    return Exit.OK


def _push(root: Path, remote: str, refspec: str) -> None:
    res = git.git("push", "--", remote, refspec, cwd=root, check=False, timeout=3600)
    for line in res.err.splitlines():
        say(f"   | {line}")
    if res.returncode != 0:
        raise refused(f"git push {refspec} was refused; see the lines above.")


# --- release ------------------------------------------------------------------------------

_SEMVER = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-.*)?")
_CONVENTIONAL = re.compile(r"(?P<type>[a-z]+)(?:\([^)]*\))?!?:\s*(?P<text>.+)")


def latest_version(root: Path) -> tuple[tuple[int, int, int], str] | None:
    """The highest vX.Y.Z among the tags and the tag that carries it.

    Pre-release suffixes are ignored for ordering; of equal versions the tag
    without a suffix wins.
    """
    best: tuple[tuple[int, int, int], bool, str] | None = None
    for t in git.out("tag", "--list", "v*", cwd=root).split():
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
            confirm: Confirm) -> int:
    """Tag the next semver release with a changelog message; then as `backup`."""
    repo = git.find_repo(cwd)
    latest = latest_version(repo.root)
    tag = next_version(latest[0] if latest else None, part)
    last = latest[1] if latest else None
    title = f"Release {tag}" + (f" - {description}" if description else "")
    message = f"{title}\n\n{changelog(repo.root, last)}\n"
    say(f"next release: {tag} (after {last or 'none'})")
    say("tag message:")
    for line in message.rstrip().splitlines():
        say(f"  | {line}")
    if not yes and not confirm(f"Create {tag}{' and push it' if push else ''}?"):
        raise refused("release cancelled; nothing was created.")
    return backup(cwd, BackupPlan(tag, message, push=push, yes=True), confirm)
