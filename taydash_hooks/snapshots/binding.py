"""A manifest is only ever used for the tag it names: the binding check every reader runs.

Anyone who can write to the store can copy one tag's manifest over
another's; a tag can be deleted and re-created for another commit. So a
manifest is trusted only when its ``tag`` is the requested name and its tag
object and commit are those of that tag in this repository.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import refused
from taydash_hooks.output import say
from taydash_hooks.snapshots import manifest
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.snapshots.signing import Signature
from taydash_hooks.store import Store

if TYPE_CHECKING:
    from taydash_hooks.tags.policy import TagPolicy


def binding_problem(repo: git.Repo, doc: Manifest, tag: str,
                    targets: dict[str, tuple[str, str]] | None = None) -> str | None:
    """Why ``doc`` is not the backup of ``tag`` in ``repo``, or None when it is; ``targets``
    (:func:`git.tag_targets`) answers for every tag at once when many are judged."""
    if doc.tag != tag:
        return (f"manifests/{tag}.json names tag {doc.tag!r}, not {tag!r}: it was copied or "
                "renamed in the store")
    if targets is not None:
        oid, peeled = targets.get(tag, (None, None))
    else:
        oid = git.rev_parse(f"refs/tags/{tag}", repo.root)
        peeled = None
    if oid is None:
        return (f"there is no tag {tag} in this repository to check the backup against "
                "(git fetch --tags)")
    if oid != doc.tag_object:
        return (f"the backup of {tag} was taken for tag object {doc.tag_object[:12]}, but {tag} "
                f"here is {oid[:12]} (the tag was re-created)")
    commit = peeled if peeled is not None else git.rev_parse(f"{oid}^{{commit}}", repo.root)
    if commit != doc.commit:
        return (f"the backup of {tag} records commit {doc.commit[:12]}, but {tag} points at "
                f"{(commit or '?')[:12]}")
    return artifacts_problem(doc)


def artifacts_problem(doc: Manifest) -> str | None:
    """Why an artifact of ``doc`` is not its own run's, or None: every key (and sidecar) must
    carry the manifest's tag and run id, or another backup's genuine artifact (its key, hash
    and size all right) could stand in for this one's."""
    run = doc.run or doc.timestamp  # manifests before run ids: <tag>_<TS>
    if not run:
        return f"the manifest of {doc.tag} names no run, so no artifact can be shown to be its own"
    own = tuple(f"{folder}{doc.tag}_{run}" for folder in manifest.RUN_FOLDERS)
    for art in doc.artifacts:
        for key in (art.key, art.sha256_key):
            if key is None:
                continue
            if not any(key.startswith(o) and key[len(o):len(o) + 1] in ("_", ".", "/")
                       for o in own):
                return (f"artifact {key} does not belong to this backup's run "
                        f"({doc.tag}_{run}): it was taken from another backup")
        if art.sha256_key is not None and art.sha256_key != f"{art.key}.sha256":
            return f"the sidecar {art.sha256_key} is not that of {art.key}"
    return None


def judge(repo: git.Repo, cfg: Config, store: Store, doc: Manifest,
          tag: str) -> tuple[Signature | None, str | None]:
    """Whether ``doc`` is to be believed as the backup of ``tag``, quietly: its signature
    verdict (None when not bound), and why not, or None (:class:`Judge`, for one)."""
    with Judge(repo, cfg, store) as one:
        return one(doc, tag)


class Judge:
    """:func:`judge` for many manifests: every tag resolved in one git call, the
    retention records listed once, one keyring for every signature; callable from several
    threads once entered (the keyring is built on entry, :meth:`TagPolicy.prepare`)."""

    def __init__(self, repo: git.Repo, cfg: Config, store: Store) -> None:
        self.repo, self.cfg, self.store = repo, cfg, store
        self.targets: dict[str, tuple[str, str]] = {}
        self.records: set[str] = set()
        self._policy: TagPolicy | None = None

    def __enter__(self) -> Judge:
        from taydash_hooks.snapshots import signing
        from taydash_hooks.snapshots.removals import PREFIX
        from taydash_hooks.tags.policy import TagPolicy
        from taydash_hooks.tags.signatures import At

        self.targets = git.tag_targets(self.repo.root)
        self.records = set(self.store.keys(PREFIX))
        if self.cfg.tags is not None and signing.mode(self.cfg) != "off":
            self._policy = TagPolicy(self.repo, self.cfg, At.SIGNED).__enter__()
            self._policy.prepare()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._policy is not None:
            self._policy.__exit__(None, None, None)

    def __call__(self, doc: Manifest, tag: str) -> tuple[Signature | None, str | None]:
        from taydash_hooks.snapshots import signing
        from taydash_hooks.snapshots.removals import rollback_problem

        problem = binding_problem(self.repo, doc, tag, self.targets)
        if problem:
            return None, problem
        sig = signing.check(self.repo, self.cfg, self.store, doc, self._policy)
        if not signing.believed(self.cfg, sig):
            return sig, f"the manifest is {sig.text()}"
        return sig, rollback_problem(self.repo, self.cfg, self.store, doc, self.records)


def require_trusted(repo: git.Repo, cfg: Config, store: Store,
                    tag: str) -> tuple[Manifest, Signature]:
    """:func:`require_bound`, then the manifest's signature (:mod:`.signing`), said on stderr;
    refused when ``signed_manifests = "required"`` and no allowed key signed it."""
    from taydash_hooks.snapshots import signing
    from taydash_hooks.snapshots.removals import rollback_problem

    doc = require_bound(repo, store, tag)
    sig = signing.require(repo, cfg, store, doc)
    rollback = rollback_problem(repo, cfg, store, doc)
    if rollback:
        raise refused(f"refusing the backup of {tag}: {rollback}.")
    if sig.allowed:
        say(f"manifest of {tag}: {sig.text()}")
    return doc, sig


def require_bound(repo: git.Repo, store: Store, tag: str) -> Manifest:
    """The manifest of ``tag``, refused (exit 1) unless it belongs to this repository's ``tag``."""
    doc = manifest.require(store, tag)
    problem = binding_problem(repo, doc, tag)
    if problem:
        raise refused(f"refusing the backup of {tag}: {problem}.")
    return doc


_SEMVER = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-.*)?")


def next_free_name(repo: git.Repo, store: Store, tag: str) -> str | None:
    """The next patch version after ``tag`` that neither a tag nor a backup holds."""
    m = _SEMVER.fullmatch(tag)
    if not m:
        return None
    taken = set(manifest.all_tags(store))
    taken |= set(git.out("tag", "--list", "v*", cwd=repo.root).split())
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3))
    for bump in range(1, 1000):
        name = f"v{major}.{minor}.{patch + bump}{m.group(4) or ''}"
        if name not in taken:
            return name
    return None


def name_taken(repo: git.Repo, store: Store, tag: str, doc: Manifest | None,
               tag_object: str) -> str | None:
    """Why ``tag`` may not name ``tag_object`` when ``doc`` is the store's manifest of that
    name: a backup already holds it; or None (no manifest, or the same tag object).

    Backed-up names are never reused: a manifest stays bound to the tag object
    it was taken for, so a re-created tag would otherwise pass as backed up.
    """
    if doc is None or doc.tag_object == tag_object:
        return None
    suggestion = next_free_name(repo, store, tag)
    hint = f"; use the next free version, {suggestion}" if suggestion else "; use a new name"
    return (f"the name {tag} is taken by a backup in {store.url} of another tag object "
            f"({doc.tag_object[:12]}, taken {doc.created or 'earlier'}); backed-up names are "
            f"never reused{hint}")
