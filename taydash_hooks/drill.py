"""`taydash verify TAG` and `taydash drill`: prove a backup can be brought back.

verify: the tag is on the remote with the same id, its signature passes the
policy, a fresh clone of the remote at the tag validates, and every artifact
re-hashes. drill adds real restores (a scratch database, dropped after; a
vmrestore into a temp dir) for the last N release tags. Neither changes the
user's repository or databases.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taydash_hooks import config as config_mod
from taydash_hooks import git, manifest
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError, refused
from taydash_hooks.output import color, emit_json
from taydash_hooks.remote import ls_remote, upstream
from taydash_hooks.tag_report import release_tags


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not applicable (feature not configured)
    detail: str

    def cell(self) -> str:
        return "n/a" if self.ok is None else ("pass" if self.ok else "FAIL")


@dataclass
class Report:
    tag: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "ok": self.ok, "seconds": round(self.seconds, 1),
                "checks": [{"name": c.name, "result": c.cell(), "detail": c.detail}
                           for c in self.checks]}


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
        return Check("remote", False, f"{tag} is not on {remote}")
    if local and theirs != local:
        return Check("remote", False, f"{remote} has {tag} as {theirs[:12]}, local is {local[:12]}")
    return Check("remote", True, f"{remote} has {tag} ({theirs[:12]})")


def _signature_check(repo: git.Repo, cfg: Config, tag: str, oid: str) -> Check:
    if cfg.tags is None:
        return Check("signature", None, "no [tags] policy configured")
    from taydash_hooks.tag_policy import TagPolicy

    with TagPolicy(repo, cfg) as policy:
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
        return Check("clone", False, f"{tag} cannot be checked out in a fresh clone")
    return Check("clone", True, f"fresh clone at {tag}")


def _validate_check(repo: git.Repo, cfg: Config, root: Path) -> Check:
    if cfg.validate is None or not cfg.validate.commands:
        return Check("validate", None, "no [validate] commands configured")
    from taydash_hooks.gate import run_commands

    # Never the cache: the point is to run the commands again on a fresh clone.
    verdict = run_commands(cfg.validate, root, repo.state_dir / "logs", "verify")
    return Check("validate", verdict.ok, verdict.summary())


def _artifacts_check(repo: git.Repo, cfg: Config, tag: str) -> tuple[Check, dict[str, Any] | None]:
    if cfg.snapshots is None:
        return Check("artifacts", None, "no [snapshots] configured"), None
    from taydash_hooks.backups import check_artifact
    from taydash_hooks.store import open_store

    store = open_store(repo, cfg)
    doc = manifest.load(store, tag)
    if doc is None:
        return Check("artifacts", False, f"no manifest for {tag} in {store.url}"), None
    for art in manifest.artifacts(doc):
        problem = check_artifact(cfg, store, art, deep=False)
        if problem:
            return Check("artifacts", False, f"{art.get('key')}: {problem}"), doc
    return Check("artifacts", True, f"{len(manifest.artifacts(doc))} artifact(s) re-hashed"), doc


def verify_tag(repo: git.Repo, cfg: Config, remote: str, tag: str,
               restores: bool = False) -> Report:
    """All checks of one tag (and the restores when ``restores``)."""
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
            report.checks.append(_guard("db restore", lambda: _db_restore(repo, cfg, doc)))
            report.checks.append(_guard("vm restore", lambda: _vm_restore(repo, cfg, doc, tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.seconds = time.monotonic() - start
    return report


def _db_restore(repo: git.Repo, cfg: Config, doc: dict[str, Any] | None) -> Check:
    arts = manifest.artifacts(doc, "postgres") if doc else []
    if not arts or cfg.snapshots is None or cfg.snapshots.postgres is None:
        return Check("db restore", None, "no PostgreSQL dump in this backup")
    from taydash_hooks import snapshot_postgres as pg
    from taydash_hooks.snapshots import snapshot_timeout
    from taydash_hooks.store import open_store

    store = open_store(repo, cfg)
    done = []
    for art in arts:
        scratch = f"taydash_drill_{secrets.token_hex(6)}"
        try:
            done.append(pg.restore(cfg.snapshots.postgres, store, art, scratch, snapshot_timeout()))
        finally:
            pg.drop(cfg.snapshots.postgres, scratch)  # scratch only: dropped whatever happened
    return Check("db restore", True, "; ".join(done))


def _vm_restore(repo: git.Repo, cfg: Config, doc: dict[str, Any] | None, tmp: Path) -> Check:
    arts = manifest.artifacts(doc, "victoriametrics") if doc else []
    if not arts:
        return Check("vm restore", None, "no VictoriaMetrics backup in this backup")
    from taydash_hooks import snapshot_vm
    from taydash_hooks.config import VictoriaMetricsConfig
    from taydash_hooks.snapshots import snapshot_timeout
    from taydash_hooks.store import open_store

    vcfg = (cfg.snapshots.victoriametrics if cfg.snapshots else None) or VictoriaMetricsConfig()
    msg = snapshot_vm.restore(vcfg, open_store(repo, cfg), arts[0], tmp / "vm", snapshot_timeout())
    return Check("vm restore", True, msg)


def _remote_name(repo: git.Repo) -> str:
    try:
        return upstream(repo.root).remote
    except TaydashError:
        remotes = git.out("remote", cwd=repo.root).split()
        if "origin" in remotes:
            return "origin"
        raise


def verify(cwd: Path, tag: str, as_json: bool) -> int:
    """One line per check; exit 1 when any fails."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    report = verify_tag(repo, cfg, _remote_name(repo), tag)
    if as_json:
        emit_json(report.as_dict())
    else:
        for c in report.checks:
            mark = {"pass": color("PASS", "green", sys.stdout), "FAIL": color("FAIL", "red", sys.stdout)}
            print(f"{mark.get(c.cell(), 'n/a '):<4} {c.name:<10} {c.detail}")
    return Exit.OK if report.ok else Exit.REFUSED


COLUMNS = ("clone", "validate", "signature", "db restore", "vm restore")


def drill(cwd: Path, last: int, as_json: bool) -> int:
    """The monthly restore drill; a table and exit 1 when any cell failed."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    tags = [name for name, _ in release_tags(repo, cfg)][:last]
    if not tags:
        raise refused("there are no release tags to drill (create one with taydash release).")
    remote = _remote_name(repo)
    reports = [verify_tag(repo, cfg, remote, t, restores=True) for t in tags]
    if as_json:
        emit_json({"ok": all(r.ok for r in reports), "tags": [r.as_dict() for r in reports]})
    else:
        width = max(len(t) for t in [*tags, "tag"])
        print(f"{'tag':<{width}}  " + "  ".join(f"{c:<10}" for c in COLUMNS) + "  duration")
        for r in reports:
            cells = []
            for name in COLUMNS:
                c = r.get(name)
                cells.append(f"{c.cell() if c else 'n/a':<10}")
            print(f"{r.tag:<{width}}  " + "  ".join(cells) + f"  {r.seconds:.1f} s")
        for r in reports:
            for c in r.checks:
                if c.ok is False:
                    print(f"{r.tag}: {c.name}: {c.detail}")
    return Exit.OK if all(r.ok for r in reports) else Exit.REFUSED
