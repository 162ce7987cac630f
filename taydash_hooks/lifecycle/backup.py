"""`taydash backup`: the team's manual backup page as one command.

Every step prints one line as it starts and ends and the first failure
stops the run with a sentence saying what to do. A failure rolls back what
this run created (the tag, the snapshots it took): the repository is left as
it was before the command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError, refused, usage
from taydash_hooks.gate.validation import dirty_files
from taydash_hooks.output import line
from taydash_hooks.remote import Upstream, ls_remote, upstream
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.tags.naming import naming_problem

Confirm = Callable[[str], bool]


@contextmanager
def step(title: str) -> Iterator[None]:
    """``-> title`` when it starts, ``ok``/``FAILED`` with the time when it ends."""
    line(f"-> {title}")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        line(f"   FAILED: {title}")
        raise
    line(f"   ok ({time.monotonic() - start:.1f} s)")


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
                line(f"   rolled back: {what}")
            except Exception as exc:  # keep undoing the rest
                line(f"   could not roll back {what}: {exc}")


def check_name(cfg: Config, tag: str) -> None:
    naming = cfg.tags.naming if cfg.tags else "convention"
    problem = naming_problem(tag, naming)
    if problem:
        raise usage(problem + ".")


def _validate_head(repo: git.Repo, cfg: Config) -> None:
    if cfg.validate is None or not cfg.validate.commands:
        line("   (no [validate] commands configured)")
        return
    from taydash_hooks.gate.validation import Gate, resolve_targets

    head = git.out("rev-parse", "HEAD", cwd=repo.root)
    target = resolve_targets([head], repo.root)[head]
    assert target is not None
    verdict = Gate(repo, cfg.validate).check(target)
    line(f"   HEAD {head[:7]}  {verdict.text()}")
    if not verdict.ok:
        raise refused(f"validation of HEAD failed ({verdict.text()}); fix it and commit first.")


def _create_tag(repo: git.Repo, tag: str, message: str) -> str:
    # The hooks run here: the policy at creation, then (foreground) the snapshots.
    from taydash_hooks.snapshots.kinds.base import snapshot_timeout

    # The policy still runs at creation; the snapshot is ours to take once, next step
    # (not also by the tag's hook: one pg_dump per tag, even when it fails).
    from taydash_hooks.snapshots.triggers import DEFER_ENV

    env = {**git.no_git_env(), DEFER_ENV: "1"}
    res = git.git("tag", "-s", "-m", message, "--", tag, cwd=repo.root, check=False,
                  timeout=snapshot_timeout() + 600, env=env)
    for text in res.err.splitlines():
        line(f"   | {text}")
    if res.returncode != 0:
        # git does not say which of its steps failed; the lines relayed above do (the tag
        # policy's reason, or gpg/ssh-keygen's), so the sentence names both causes.
        last = res.err.strip().splitlines()[-1:] or ["no output"]
        raise refused(
            f"git could not sign and create tag {tag} ({last[0]}): either the tag policy "
            "refused it (its reason is above) or the signing key is missing or locked (set "
            "user.signingkey, and gpg.format=ssh for an SSH key, unlock it, then rerun).")
    return git.out("rev-parse", f"refs/tags/{tag}", cwd=repo.root)


def _snapshots(repo: git.Repo, cfg: Config, tag: str) -> Manifest | None:
    """Take the snapshots (or confirm the tag's hook took them); undone with the tag."""
    if cfg.snapshots is None:
        line("   (no [snapshots] configured)")
        return None
    from taydash_hooks.lifecycle.snapshot import snapshot
    from taydash_hooks.snapshots.location import open_store

    return snapshot(repo, cfg, tag, store=open_store(repo, cfg))


def _no_backup_yet(repo: git.Repo, cfg: Config, tag: str) -> None:
    if cfg.snapshots is None:
        return
    from taydash_hooks.snapshots.location import open_store

    store = open_store(repo, cfg)
    if manifest.load(store, tag) is not None:
        raise refused(f"{store.url} already holds a backup named {tag} (of an earlier tag); "
                      "choose a new tag name.")


def _optional_upstream(root: Path) -> Upstream | None:
    try:
        return upstream(root)
    except TaydashError:
        return None  # a repository without a remote can still tag and snapshot


def _not_on_remote(root: Path, remote: str, tag: str) -> None:
    on_remote = ls_remote(root, remote, f"refs/tags/{tag}")
    if on_remote:
        raise refused(f"tag {tag} already exists on {remote} "
                      f"({next(iter(on_remote.values()))[:12]}); choose a new name.")


def _delete_tag(root: Path, tag: str) -> None:
    if git.rev_parse(f"refs/tags/{tag}", root) is not None:
        git.git("tag", "-d", "--", tag, cwd=root)


def _remove_own_backup(repo: git.Repo, cfg: Config, tag: str) -> None:
    if cfg.snapshots is not None:
        from taydash_hooks.snapshots.location import open_store
        from taydash_hooks.snapshots.retention import delete

        store = open_store(repo, cfg)
        doc = manifest.load(store, tag)
        if doc is not None:
            delete(store, doc)  # manifest first: from then on it is no backup


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
        up = upstream(root) if plan.push else _optional_upstream(root)
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
    if up is not None and not plan.push:
        with step(f"checking {tag} is not on {up.remote}"):
            _not_on_remote(root, up.remote, tag)
    if up is not None and plan.push:
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
        with step(f"checking {tag} is not on {up.remote}"):
            _not_on_remote(root, up.remote, tag)
    rollback = Rollback()
    try:
        with step(f"creating signed tag {tag}"):
            # Registered before git runs: an interrupt while `git tag` (and the snapshot
            # its hook takes) is still running must remove the tag too. The name did not
            # exist before this run (checked above), so whatever holds it now is ours.
            rollback.add(f"tag {tag}", lambda: _delete_tag(root, tag))
            rollback.add(f"snapshots of {tag}", lambda: _remove_own_backup(repo, cfg, tag))
            tag_oid = _create_tag(repo, tag, plan.message)
        with step("taking the snapshots"):
            doc = _snapshots(repo, cfg, tag)
        if up is not None and plan.push:
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
    line("")
    line(f"backup {tag} done")
    line(f"  tag       {tag} ({tag_oid[:12]})")
    line(f"  commit    {head}")
    if doc is not None:
        line(f"  manifest  {manifest.key(tag)}")
        for art in doc.artifacts:
            line(f"  artifact  {art.kind}: {art.key} ({art.size} bytes)")
    if up is not None and plan.push:
        line(f"  remote    {up.remote} ({up.branch} and {tag} confirmed)")
    return Exit.OK


def _push(root: Path, remote: str, refspec: str) -> None:
    res = git.git("push", "--", remote, refspec, cwd=root, check=False, timeout=3600)
    for text in res.err.splitlines():
        line(f"   | {text}")
    if res.returncode != 0:
        raise refused(f"git push {refspec} was refused; see the lines above.")
