"""`taydash check-tags [TAG...] [--all] [--json]`: the policy verdict for each tag."""

from __future__ import annotations

import sys
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, usage
from taydash_hooks.output import color, emit_json
from taydash_hooks.tags.policy import TagPolicy, TagVerdict


def local_tags(cwd: Path) -> dict[str, str]:
    """Every local tag name and the object id its ref holds."""
    out = git.out("for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/tags", cwd=cwd)
    pairs = (line.split(" ", 1) for line in out.splitlines() if line)
    return {name: oid for name, oid in pairs}


def release_tags(repo: git.Repo, cfg: Config) -> list[tuple[str, int]]:
    """Tags matching ``tags.release`` (``v*`` without a [tags] table), newest first, with their unix time."""
    import fnmatch

    patterns = cfg.tags.release if cfg.tags else ("v*",)
    out = git.out("for-each-ref", "--sort=-creatordate",
                  "--format=%(refname:strip=2) %(creatordate:unix)", "refs/tags", cwd=repo.root)
    rows = []
    for line in out.splitlines():
        name, _, when = line.rpartition(" ")
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            rows.append((name, int(when or 0)))
    return rows


def run(cwd: Path, names: list[str], all_tags: bool, as_json: bool) -> int:
    """Print a table (or JSON) of verdicts; exit 1 when any tag is rejected."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if cfg.tags is None:
        raise usage("No [tags] table in the configuration; there is no tag policy to check.")
    if not names and not all_tags:
        raise usage("Name the tags to check, or pass --all.")
    tags = local_tags(repo.root)
    with TagPolicy(repo, cfg) as policy:
        if all_tags:
            names = sorted(n for n in tags if policy.is_release(n))
        missing = [n for n in names if n not in tags]
        if missing:
            raise usage(f"No tag named {missing[0]!r} in this repository.")
        release = [n for n in names if policy.is_release(n)]
        judged = {v.tag: v for v in policy.judge_many([(n, tags[n]) for n in release])}
    verdicts = [judged.get(n) or TagVerdict(n, tags[n], True, "not a release tag (tags.release)")
                for n in names]
    if as_json:
        emit_json([{"tag": v.tag, "object": v.oid, "signer": v.signer, "kind": v.kind,
                    "verdict": "accept" if v.ok else "reject", "reason": v.reason}
                   for v in verdicts])
    else:
        width = max([len(v.tag) for v in verdicts] + [3])
        print(f"{'TAG':<{width}}  {'KIND':<7}  {'VERDICT':<7}  {'SIGNER':<40}  REASON")
        for v in verdicts:
            verdict = color("accept", "green", sys.stdout) if v.ok else color("reject", "red", sys.stdout)
            print(f"{v.tag:<{width}}  {v.kind or '-':<7}  {verdict:<7}  {v.signer or '-':<40}  "
                  f"{v.reason}")
    return Exit.OK if all(v.ok for v in verdicts) else Exit.REFUSED
