"""The validation gate: run ``validate.commands`` on exactly the commits being pushed.

With ``isolate = true`` each distinct tree is checked out in a temporary
worktree, so uncommitted files can neither rescue a broken commit nor block
a good one, and the user's working tree, index and stash are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import git, process
from taydash_hooks.config import ValidateConfig
from taydash_hooks.errors import TaydashError, refused, usage
from taydash_hooks.gate.cache import ValidateCache, key, profile
from taydash_hooks.gate.this_push import ThisPush
from taydash_hooks.output import Word
from taydash_hooks.results import Finding
from taydash_hooks.statefiles import open_private, private_dir

log = logging.getLogger(__name__)

TAIL_BYTES = 4000


@dataclass(frozen=True)
class Target:
    """A commit to validate and the tree that identifies it."""

    commit: str
    tree: str




def resolve_targets(oids: list[str], cwd: Path | None = None) -> dict[str, Target | None]:
    """Peel each oid to its commit and tree with one ``git cat-file`` call.

    None for an oid that does not lead to a commit (a tag of a tree or blob).
    """
    exprs = []
    for oid in oids:
        exprs += [f"{oid}^{{commit}}", f"{oid}^{{tree}}"]
    res = git.git(
        "cat-file", "--batch-check=%(objectname) %(objecttype)",
        input="".join(f"{e}\n" for e in exprs).encode(), cwd=cwd,
    )
    lines = res.out.splitlines()
    targets: dict[str, Target | None] = {}
    for i, oid in enumerate(oids):
        commit, tree = lines[2 * i].split(), lines[2 * i + 1].split()
        if len(commit) == 2 and commit[1] == "commit" and len(tree) == 2 and tree[1] == "tree":
            targets[oid] = Target(commit[0], tree[0])
        else:
            targets[oid] = None
    return targets


@contextlib.contextmanager
def temporary_worktree(repo: git.Repo, commit: str) -> Iterator[Path]:
    """A detached worktree at ``commit``, removed afterwards whatever happens.

    Its folder records our pid, so that after a SIGKILL (no ``finally`` runs) the
    next gate recognises it as a dead run's and removes it (:func:`prune_dead_worktrees`).
    """
    base = Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX))
    # Our pid and our repository: a later gate of this repository (and only of this one)
    # recognises a killed run's folder by them.
    (base / OWNER).write_text(f"{os.getpid()}\n{repo.common_dir.resolve()}\n")
    path = base / "tree"
    env = git.no_git_env()
    try:
        git.git(
            "--git-dir", str(repo.common_dir), "worktree", "add", "--detach", "--quiet",
            str(path), commit, env=env,
        )
        yield path
    finally:
        # Ctrl-C can arrive here too: the removal must not be skipped halfway.
        git.git(
            "--git-dir", str(repo.common_dir), "worktree", "remove", "--force", str(path),
            env=env, check=False,
        )
        shutil.rmtree(base, ignore_errors=True)
        git.git("--git-dir", str(repo.common_dir), "worktree", "prune", env=env, check=False)


def _program(argv: list[str], root: Path, cmd: str) -> str | Finding:
    """Where the command's program is, or a failing verdict when it cannot run."""
    prog = argv[0]
    if "/" not in prog:
        found = shutil.which(prog)
        return found if found else Finding(Word.FAILED, f"{cmd}: {prog} not found on PATH")
    path = (root / prog).resolve() if not os.path.isabs(prog) else Path(prog).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise usage(
            f"validate command {cmd!r} points outside the repository; "
            "commands must be repository paths or programs on PATH."
        )
    if not path.is_file():
        return Finding(Word.FAILED, f"{cmd}: {prog} does not exist in this commit")
    if not os.access(path, os.X_OK):
        return Finding(Word.FAILED, f"{cmd}: {prog} is not executable (chmod +x, commit it)")
    return str(path)


def _tail(log_path: Path) -> str:
    size = log_path.stat().st_size
    with log_path.open("rb") as fh:
        fh.seek(max(0, size - TAIL_BYTES))
        data = fh.read()
    text = data.decode("utf-8", "replace")
    # Binary output must not garble the terminal: keep printable text, tabs, newlines.
    text = re.sub(r"[^\S\n\t ]|[\x00-\x08\x0b-\x1f\x7f]", "?", text)
    lines = text.splitlines()[-20:]
    return "\n".join("    " + line for line in lines)


WORKTREE_PREFIX = "taydash-validate-"
OWNER = "owner"


def _dead_owner(base: Path, repo: git.Repo) -> bool:
    """True when ``base`` is a temp folder of a gate of ``repo`` whose run is gone (another
    repository's runs are its own gate's business)."""
    try:
        st = os.lstat(base)
        owner = (base / OWNER).read_text().splitlines()
        pid = int(owner[0])
    except (OSError, ValueError, IndexError):
        return False
    if len(owner) < 2 or owner[1] != str(repo.common_dir.resolve()):
        return False
    if st.st_uid != os.getuid() or not stat.S_ISDIR(st.st_mode):
        return False
    return not process.pid_alive(pid)


def prune_dead_worktrees(repo: git.Repo) -> list[Path]:
    """Remove the worktrees and temp folders that killed runs of the gate left; which ones."""
    env = git.no_git_env()
    gone: list[Path] = []
    listing = git.git("--git-dir", str(repo.common_dir), "worktree", "list", "--porcelain",
                      env=env, check=False).out
    for line in listing.splitlines():
        if not line.startswith("worktree "):
            continue
        path = Path(line[len("worktree "):])
        if path.parent.name.startswith(WORKTREE_PREFIX) and _dead_owner(path.parent, repo):
            git.git("--git-dir", str(repo.common_dir), "worktree", "remove", "--force", str(path),
                    env=env, check=False)
            shutil.rmtree(path.parent, ignore_errors=True)
            gone.append(path.parent)
    for base in Path(tempfile.gettempdir()).glob(f"{WORKTREE_PREFIX}*"):
        if _dead_owner(base, repo):
            shutil.rmtree(base, ignore_errors=True)
            gone.append(base)
    if gone:
        git.git("--git-dir", str(repo.common_dir), "worktree", "prune", env=env, check=False)
    return gone


def run_commands(
    cfg: ValidateConfig, root: Path, log_dir: Path, label: str,
    env: Mapping[str, str] | None = None,
) -> Finding:
    """Run every command in ``root`` (``env``: variables added to git's scrubbed environment);
    the first failure decides the verdict."""
    start = time.monotonic()
    env = {**git.no_git_env(), **(env or {})}
    private_dir(log_dir)
    for n, cmd in enumerate(cfg.commands, 1):
        try:
            argv = shlex.split(cmd)
        except ValueError as exc:
            raise usage(f"validate command {cmd!r} cannot be parsed ({exc}).") from None
        if not argv:
            raise usage("validate.commands contains an empty command.")
        prog = _program(argv, root, cmd)
        if isinstance(prog, Finding):
            return prog
        log_path = log_dir / f"validate-{label}-{n}.log"
        with os.fdopen(open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as out:
            try:
                rc = process.run_logged([prog, *argv[1:]], cwd=root, env=env, output=out,
                                        timeout=cfg.timeout)
            except process.Timeout:
                log.error("%s timed out after %g s; output tail (%s):\n%s",
                          cmd, cfg.timeout, log_path, _tail(log_path))
                return Finding(Word.FAILED, f"{cmd} timed out after {cfg.timeout:g} s")
            except (OSError, TaydashError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else exc.message
                return Finding(Word.FAILED, f"{cmd}: cannot start ({why})")
        if rc != 0:
            log.error("%s exited %d; output tail (full log: %s):\n%s",
                      cmd, rc, log_path, _tail(log_path))
            return Finding(Word.FAILED, f"{cmd} exit {rc}")
        if log.isEnabledFor(logging.INFO):
            log.info("%s passed; output (%s):\n%s", cmd, log_path, _tail(log_path))
    return Finding(Word.VALIDATED, seconds=time.monotonic() - start)


def dirty_files(root: Path) -> list[str]:
    """Uncommitted and untracked paths in the work tree at ``root``."""
    res = git.git("status", "--porcelain", "--untracked-files=normal", cwd=root)
    return [line[3:] for line in res.out.splitlines() if line.strip()]


class Gate:
    """Validates targets, once per tree, consulting and feeding the cache."""

    def __init__(self, repo: git.Repo, cfg: ValidateConfig) -> None:
        self.repo = repo
        self.cfg = cfg
        self.cache = ValidateCache(repo.state_dir / "validate-cache.json") if cfg.cache else None
        self.seen: dict[str, Finding] = {}
        self._pruned = False
        self.this_push = ThisPush(repo)

    def check(self, target: Target) -> Finding:
        """The verdict for ``target``'s tree (computed once per tree per run)."""
        if target.tree in self.seen:
            return self.seen[target.tree]
        verdict = self._check(target)
        self.seen[target.tree] = verdict
        return verdict

    def _check(self, target: Target) -> Finding:
        prof = profile(self.cfg.commands, self.cfg.isolate, self.cfg.timeout)
        k = key(prof, target.tree)
        if self.cache is not None and self.cache.passed(k):
            if self.cache.commits.get(target.commit) != prof:
                self.cache.record(k, prof, target.commit)
                self.cache.save()
            return Finding(Word.CACHED)
        judged = self.this_push.seen(k)
        if judged is not None:
            return judged
        log_dir = self.repo.state_dir / "logs"
        label = target.commit[:12]
        if self.cfg.isolate:
            if not self._pruned:
                self._pruned = True
                for base in prune_dead_worktrees(self.repo):
                    log.warning("removed %s, left by a validation run that was killed", base)
            with temporary_worktree(self.repo, target.commit) as wt:
                verdict = run_commands(self.cfg, wt, log_dir, label)
        else:
            root = self.repo.toplevel
            if root is None:
                raise usage("validate.isolate = false needs a work tree.")
            dirty = dirty_files(root)
            if dirty:
                raise refused(
                    "validate.isolate = false runs in the working tree, which has "
                    f"uncommitted changes ({', '.join(dirty[:5])}); commit or stash them."
                )
            head_tree = git.rev_parse("HEAD^{tree}", cwd=root)
            if head_tree != target.tree:
                raise refused(
                    f"validate.isolate = false can only validate the checked-out commit; "
                    f"{target.commit[:12]} is not HEAD (set isolate = true)."
                )
            verdict = run_commands(self.cfg, root, log_dir, label)
        if verdict.ok and self.cache is not None:
            self.cache.record(k, prof, target.commit)
            self.cache.save()
        self.this_push.record(k, verdict)
        return verdict
