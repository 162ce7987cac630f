"""Prove one release can be brought back: the checks of `taydash verify` and `taydash drill`.

The tag is on the remote with the same id, its signature passes the policy,
a fresh clone of the remote at the tag validates, and the manifest belongs
to the tag and every stored file re-hashes. With ``restores`` (the drill)
each kind is also restored for real into scratch space. Nothing changes the
user's repository or databases.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import TaydashError, refused
from taydash_hooks.remote import ls_remote, upstream
from taydash_hooks.results import Check
from taydash_hooks.snapshots import kinds, manifest
from taydash_hooks.snapshots.kinds import SnapshotKind
from taydash_hooks.snapshots.manifest import Manifest


@dataclass
class Report:
    tag: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    environment: dict[str, Any] | None = None  # the stack rebuild's stages (drill --environment)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        doc = {"tag": self.tag, "ok": self.ok, "seconds": round(self.seconds, 1),
               "checks": [{"name": c.name, "result": c.cell(), "detail": c.detail}
                          for c in self.checks]}
        if self.environment is not None:
            doc["environment"] = self.environment
        return doc


def _guard(name: str, fn: Any) -> Check:
    try:
        result: Check = fn()
        return result
    except TaydashError as exc:
        return Check(name, False, exc.message)


def _remote_check(repo: git.Repo, remote: str, tag: str) -> Check:
    local = git.rev_parse(f"refs/tags/{tag}", repo.root)
    theirs = ls_remote(repo.root, remote, f"refs/tags/{tag}").get(f"refs/tags/{tag}")
    if theirs is None:
        return Check("remote", False, f"{tag} is not on {remote} (push it: git push {remote} "
                                      f"{tag})")
    if local and theirs != local:
        return Check("remote", False, f"{remote} has {tag} as {theirs[:12]}, local is {local[:12]}")
    return Check("remote", True, f"{remote} has {tag} ({theirs[:12]})")


def _signature_check(repo: git.Repo, cfg: Config, tag: str, oid: str) -> Check:
    if cfg.tags is None:
        return Check("signature", None, "no [tags] policy configured")
    from taydash_hooks.tags.policy import TagPolicy
    from taydash_hooks.tags.signatures import At

    with TagPolicy(repo, cfg, At.SIGNED) as policy:  # an existing tag: judged when signed
        v = policy.judge_many([(tag, oid)])[0]
    return Check("signature", v.ok, v.reason + (f" ({v.signer})" if v.signer else ""))


def _clone(repo: git.Repo, remote: str, tag: str, dest: Path) -> Check:
    url = git.git("remote", "get-url", remote, cwd=repo.root).out.strip()
    env = git.no_git_env()
    res = git.git("clone", "--quiet", "--no-checkout", "--", url, str(dest), env=env,
                  check=False, timeout=3600)
    if res.returncode != 0:
        return Check("clone", False, f"git clone failed: {res.err.strip()[-200:]}")
    res = git.git("-C", str(dest), "checkout", "--quiet", "--detach", f"refs/tags/{tag}",
                  env=env, check=False)
    if res.returncode != 0:
        return Check("clone", False, f"{tag} cannot be checked out in a fresh clone of {remote} "
                                     f"(push it and its commits: git push {remote} HEAD {tag})")
    return Check("clone", True, f"fresh clone at {tag}")


def _validate_check(repo: git.Repo, cfg: Config, root: Path) -> Check:
    if cfg.validate is None or not cfg.validate.commands:
        return Check("validate", None, "no [validate] commands configured")
    from taydash_hooks.gate.validation import run_commands

    # Never the cache: the point is to run the commands again on a fresh clone.
    verdict = run_commands(cfg.validate, root, repo.state_dir / "logs", "verify")
    return Check("validate", verdict.ok, verdict.text())


def _artifacts_check(repo: git.Repo, cfg: Config, tag: str) -> tuple[Check, Manifest | None]:
    if cfg.snapshots is None:
        return Check("artifacts", None, "no [snapshots] configured"), None
    from taydash_hooks.snapshots.binding import judge
    from taydash_hooks.snapshots.kinds import check_all
    from taydash_hooks.snapshots.location import open_store

    store = open_store(repo, cfg)
    doc = manifest.load(store, tag)
    if doc is None:
        return Check("artifacts", False, f"no manifest for {tag} in {store.url}"), None
    sig, problem = judge(repo, cfg, store, doc, tag)
    if problem or sig is None:
        return Check("artifacts", False, problem or "not bound"), None
    if doc.partial:
        return Check("artifacts", False, f"a partial backup: it lacks "
                                         f"{', '.join(doc.missing_kinds)} (taken with --only)"), doc
    rows = check_all(cfg, store, doc, deep=False)
    for _, key, checked in rows:
        if not checked.ok:
            return Check("artifacts", False, f"{key}: {checked.problems[0]}"), doc
    files = sum(c.files for _, _, c in rows)
    size = sum(c.bytes for _, _, c in rows)
    return Check("artifacts", True, f"{len(rows)} artifact(s), {files} file(s), {size} bytes "
                                    f"re-hashed; manifest {sig.text()}"), doc


def verify_tag(repo: git.Repo, cfg: Config, remote: str, tag: str,
               restores: bool = False, environment: bool = False) -> Report:
    """All checks of one tag (and the restores when ``restores``; with ``environment`` also
    the tag's compose stack started fresh, restored and validated: lifecycle/environment.py)."""
    start = time.monotonic()
    report = Report(tag)
    oid = git.rev_parse(f"refs/tags/{tag}", repo.root)
    if oid is None:
        raise refused(f"there is no tag {tag!r} in this repository.")
    report.checks.append(_guard("remote", lambda: _remote_check(repo, remote, tag)))
    report.checks.append(_guard("signature", lambda: _signature_check(repo, cfg, tag, oid)))
    tmp = Path(tempfile.mkdtemp(prefix="taydash-verify-"))
    try:
        clone = _guard("clone", lambda: _clone(repo, remote, tag, tmp / "clone"))
        report.checks.append(clone)
        if clone.ok:
            report.checks.append(_guard("validate", lambda: _validate_check(repo, cfg, tmp / "clone")))
        else:
            report.checks.append(Check("validate", False, "no clone to validate"))
        arts, doc = _artifacts_check(repo, cfg, tag)
        report.checks.append(arts)
        if restores:
            for kind in _drilled():
                column = kind.drill_column
                assert column is not None
                report.checks.append(_guard(column, lambda k=kind, c=column:
                                            _restore_check(repo, cfg, doc, k, c, tmp)))
        if environment:
            _environment_check(repo, cfg, report, doc, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.seconds = time.monotonic() - start
    return report


def _restore_check(repo: git.Repo, cfg: Config, doc: Manifest | None, kind: SnapshotKind,
                   column: str, tmp: Path) -> Check:
    """A real restore of every artifact of ``kind`` into scratch space (removed afterwards)."""
    arts = doc.of_kind(kind.name) if doc else []
    if not arts or not kind.configured(cfg):
        return Check(column, None, f"no {kind.name} artifact in this backup")
    from taydash_hooks.snapshots.location import open_store

    store = open_store(repo, cfg)
    done = [kind.drill(cfg, store, art, tmp / f"{kind.name}-{i}", doc.commit if doc else "")
            for i, art in enumerate(arts)]
    return Check(column, True, "; ".join(done))


def _environment_check(repo: git.Repo, cfg: Config, report: Report, doc: Manifest | None,
                       tmp: Path) -> None:
    """The stack rebuild, merged into the "environment" column (the config bundle's .env
    check is the other half of it)."""
    clone, signature = report.get("clone"), report.get("signature")
    outcome: Check
    if clone is None or not clone.ok:
        outcome = Check("environment", False, "stack: no clone of the tag to start")
    elif signature is not None and signature.ok is False:
        # Its compose file would run containers on this host: only a tag the policy allows.
        outcome = Check("environment", False, "stack: not started, the tag's signature is "
                                              "not allowed by the tag policy")
    elif doc is None:
        outcome = Check("environment", False, "stack: not started, no backup of the tag to "
                                              "restore into it")
    else:
        from taydash_hooks.lifecycle.environment import rebuild
        from taydash_hooks.snapshots.location import open_store

        try:
            done = rebuild(cfg, open_store(repo, cfg), doc, tmp / "clone",
                           tmp / "config-0" / "config" / ".env", repo.state_dir / "logs")
        except TaydashError as exc:
            outcome = Check("environment", False, f"stack: {exc.message}")
        else:
            report.environment = done.as_dict()
            outcome = Check("environment", done.ok, f"stack: {done.text()}")
    bundle = report.get("environment")
    if bundle is None:
        report.checks.append(outcome)
        return
    merged = Check("environment", outcome.ok is not False and bundle.ok is not False,
                   f"{bundle.detail}; {outcome.detail}")
    report.checks[report.checks.index(bundle)] = merged


def remote_name(repo: git.Repo) -> str:
    try:
        return upstream(repo.root).remote
    except TaydashError:
        remotes = git.out("remote", cwd=repo.root).split()
        if "origin" in remotes:
            return "origin"
        raise


def _drilled() -> list[SnapshotKind]:
    """The kinds a drill restores for real (each says its column)."""
    return [k for k in kinds.registry().values() if k.drill_column]


def columns(environment: bool = False) -> tuple[str, ...]:
    """The drill table: every check that decides a row is a column, so a FAIL shows where
    (``environment``: the stack rebuild's column too, when no kind has it already)."""
    names = ("remote", "signature", "clone", "validate", "artifacts",
             *(k.drill_column for k in _drilled() if k.drill_column))
    return names if not environment or "environment" in names else (*names, "environment")
