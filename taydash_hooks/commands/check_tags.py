"""`taydash check-tags [TAG...] [--all] [--json]`: the policy verdict for each tag."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit, usage
from taydash_hooks.output import color, emit_json, say
from taydash_hooks.tags.policy import TagPolicy, TagVerdict
from taydash_hooks.tags.releases import local_tags


def ci_tag(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(CI name, pushed tag) from the environment GitHub Actions or GitLab CI set, or None."""
    if env.get("GITHUB_ACTIONS") == "true":
        ref = env.get("GITHUB_REF", "")
        return ("github", ref[len("refs/tags/"):]) if ref.startswith("refs/tags/") else ("github", "")
    if env.get("GITLAB_CI") == "true":
        return "gitlab", env.get("CI_COMMIT_TAG", "")
    return None


def _annotate(kind: str, tag: str, verdict: TagVerdict) -> None:
    if kind == "github":
        # Workflow commands: the refusal shows on the run's summary page, not only in its log.
        text = verdict.reason.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        level = "notice" if verdict.ok else "error"
        print(f"::{level} title=taydash tag policy ({tag})::{text}")
    else:
        print(f"taydash: tag {tag}: {'accepted' if verdict.ok else 'REFUSED'}: {verdict.reason}")


def run_ci(cwd: Path, as_json: bool, env: Mapping[str, str] | None = None) -> int:
    """``check-tags --ci``: judge the tag this CI run was started for (the hosted remote's
    pre-receive, which GitHub and GitLab cannot run); exit 1 when the policy refuses it."""
    env = os.environ if env is None else env
    found = ci_tag(env)
    if found is None:
        raise usage("--ci: no CI environment found (GITHUB_ACTIONS or GITLAB_CI is not set).")
    kind, tag = found
    if not tag:
        say("nothing to check: this CI run is not for a tag push.")
        return Exit.OK
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    if cfg.tags is None:
        raise usage("No [tags] table in the configuration; there is no tag policy to check.")
    oid = local_tags(repo.root).get(tag)
    if oid is None:
        raise usage(f"the CI checkout has no tag {tag!r} (fetch it: actions/checkout with "
                    "fetch-depth: 0, or GIT_DEPTH: 0 on GitLab).")
    with TagPolicy(repo, cfg) as policy:
        if not policy.is_release(tag):
            say(f"nothing to check: {tag} is not a release tag (tags.release).")
            return Exit.OK
        verdict = policy.judge_many([(tag, oid)])[0]
    if as_json:
        emit_json({"tag": tag, "object": oid, "signer": verdict.signer, "kind": verdict.kind,
                   "verdict": "accept" if verdict.ok else "reject", "reason": verdict.reason})
    else:
        _annotate(kind, tag, verdict)
    return Exit.OK if verdict.ok else Exit.REFUSED


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


def explain(cwd: Path, name: str, as_json: bool) -> int:
    """Which naming rule ``name`` breaks and the nearest valid name; exit 1 when it breaks one."""
    from taydash_hooks.tags.naming import explain as why_not
    from taydash_hooks.tags.naming import naming_problem

    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    naming = cfg.tags.naming if cfg.tags else "convention"
    problem = naming_problem(name, naming)
    if naming != "convention":
        rule, nearest = (problem or "it matches tags.naming"), None
    else:
        rule, nearest = why_not(name)
    if as_json:
        emit_json({"name": name, "ok": problem is None, "rule": rule, "nearest": nearest})
    elif problem is None:
        say(f"{name}: passes ({naming}).")
    else:
        say(f"{name}: {rule}." + (f" Nearest valid name: {nearest}" if nearest else ""))
    return Exit.OK if problem is None else Exit.REFUSED
