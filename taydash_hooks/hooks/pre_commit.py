"""The pre-commit ids (`taydash-validate`, `taydash-check-tags`, `taydash-snapshot-pushed-tags`).

pre-commit hands its hooks only one pushed ref, through environment
variables, and skips tag-only pushes entirely; the direct hook sees every
line. Here the one ref is rebuilt and run through the same checks.
"""

from __future__ import annotations

import os
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit, usage
from taydash_hooks.hooks.checks import HookCheck, check_updates
from taydash_hooks.hooks.report import render
from taydash_hooks.output import say
from taydash_hooks.results import Verdict, overall
from taydash_hooks.updates import RefUpdate, classify

# Each id runs one check of the direct hook's list (the validate id also
# refuses protected-branch updates, as the direct pre-push does).
IDS: dict[str, tuple[HookCheck, ...]] = {
    "validate": (HookCheck.PROTECTED, HookCheck.VALIDATE),
    "check-tags": (HookCheck.TAGS,),
    "snapshot-pushed-tags": (HookCheck.SNAPSHOT,),
}


def update_from_env(env: dict[str, str] | None = None) -> RefUpdate | None:
    """The pushed ref pre-commit describes, or None when it describes none."""
    env = dict(os.environ) if env is None else env
    to_ref = env.get("PRE_COMMIT_TO_REF", "")
    remote_ref = env.get("PRE_COMMIT_REMOTE_BRANCH", "")
    if not to_ref or not remote_ref:
        return None
    from_ref = env.get("PRE_COMMIT_FROM_REF", "") or git.ZERO_OID
    local_ref = env.get("PRE_COMMIT_LOCAL_BRANCH", "") or to_ref
    for oid in (to_ref, from_ref):
        if git.rev_parse(oid) is None:
            raise usage(f"pre-commit passed {oid[:12]}, which is not an object in this repository.")
    remote_oid = git.rev_parse(from_ref) or from_ref
    remote = env.get("PRE_COMMIT_REMOTE_URL") or env.get("PRE_COMMIT_REMOTE_NAME")
    if remote_ref.startswith("refs/tags/") and remote:
        # For a new ref pre-commit passes the parent of the first new commit, not
        # zeros: ask the remote whether the tag exists (a move) or not (a create).
        from taydash_hooks.remote import ls_remote

        remote_oid = ls_remote(Path.cwd(), remote, remote_ref).get(remote_ref, git.ZERO_OID)
    row = (local_ref, git.rev_parse(to_ref) or to_ref, remote_ref, remote_oid)
    return classify([row])[0]


def run(hook_id: str) -> int:
    """Run one pre-commit id on the ref pre-commit handed over."""
    if hook_id not in IDS:
        raise usage(f"unknown pre-commit id {hook_id!r} (known: {', '.join(IDS)}).")
    repo = git.find_repo()
    cfg = config_mod.load(repo)
    update = update_from_env()
    if update is None:
        say("nothing to check: not a push (pre-commit handed over no pushed ref; "
            "`git push` runs this hook with one).")
        return Exit.OK
    results = check_updates(repo, cfg, [update], IDS[hook_id])
    render(results)
    return Exit.REFUSED if overall(results) is Verdict.REFUSED else Exit.OK
