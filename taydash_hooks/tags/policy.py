"""The release tag policy: one accept/reject verdict, with one reason, per tag.

Runs in pre-push (every pushed tag line), in reference-transaction at
creation (`git tag`), in pre-receive on the server and in `taydash check-tags`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from taydash_hooks import git
from taydash_hooks.config import Config, TagsConfig
from taydash_hooks.errors import Exit
from taydash_hooks.output import Word, say, warn
from taydash_hooks.results import Finding, RefResult
from taydash_hooks.tags.naming import naming_problem
from taydash_hooks.tags.objects import GitObject, TagObject, parse_tag, read_objects
from taydash_hooks.tags.signatures import (
    At,
    OpenPgpKeyring,
    Rotation,
    SigCheck,
    check_allowed_signers,
    verify_ssh,
)
from taydash_hooks.tags.verdicts import Verdicts, file_digest
from taydash_hooks.updates import Kind


@dataclass(frozen=True)
class TagVerdict:
    """Accept or reject one tag, with the reason and who signed it."""

    tag: str
    oid: str
    ok: bool
    reason: str
    signer: str = ""
    kind: str = ""
    retired: str = ""  # the day its retired key stopped signing, when one made it

    def finding(self) -> Finding:
        return Finding(Word.ACCEPTED if self.ok else Word.REFUSED, self.reason)


class TagPolicy:
    """Judge tags against ``[tags]``; use as a context manager (it owns a temp keyring)."""

    def __init__(self, repo: git.Repo, cfg: Config, at: At = At.NOW) -> None:
        """``at``: a new tag (push, creation, check-tags) is judged now; history (a drill's
        signature column, a stored manifest) when it was signed (:class:`At`)."""
        assert cfg.tags is not None
        self.repo = repo
        self.cfg: TagsConfig = cfg.tags
        self.config = cfg
        self.at = at
        self.rotation = Rotation(
            {k.fingerprint: k.until_timestamp for k in cfg.tags.retired_openpgp_fingerprints},
            {k.fingerprint: k.until.isoformat() for k in cfg.tags.retired_openpgp_fingerprints},
            frozenset(cfg.tags.revoked_openpgp_fingerprints), at)
        self._stack = contextlib.ExitStack()
        self._keyring: OpenPgpKeyring | None = None
        self._ssh_files: tuple[Path, Path | None] | None = None  # allowed_signers, revocations
        self._remembered: dict[str, Verdicts] = {}

    def __enter__(self) -> TagPolicy:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def is_release(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.cfg.release)

    # --- signature back-ends, set up on first use --------------------------------

    def _openpgp(self) -> OpenPgpKeyring:
        if self._keyring is None:
            ring = OpenPgpKeyring(self.config.path(self.cfg.openpgp_keys),
                                  self.cfg.openpgp_fingerprints, self.cfg.allow_expired_keys,
                                  cache_dir=self.repo.state_dir / "keyrings",
                                  rotation=self.rotation)
            self._keyring = self._stack.enter_context(ring)
        return self._keyring

    def _ssh_setup(self) -> tuple[Path, Path | None]:
        if self._ssh_files is None:
            signers = self.config.path(self.cfg.allowed_signers)
            check_allowed_signers(signers)
            # git's own setting for revoked SSH keys, honoured the way git verify-tag does.
            rev = git.git("config", "--path", "--get", "gpg.ssh.revocationFile",
                          cwd=self.repo.root, check=False).out.strip()
            self._ssh_files = (signers, Path(rev) if rev else None)
        return self._ssh_files

    def _ssh(self, tag: TagObject) -> SigCheck:
        signers, revoked = self._ssh_setup()
        return verify_ssh(tag.payload, tag.signature, signers, revoked,
                          signed_at=tagger_time(tag.tagger) if self.at is At.SIGNED else None)

    # --- verdicts ----------------------------------------------------------------

    def _structural(self, name: str, oid: str, obj: GitObject | None) -> TagVerdict | TagObject:
        """Every check short of the signature; a verdict, or the tag to verify."""
        problem = naming_problem(name, self.cfg.naming)
        if problem:
            return TagVerdict(name, oid, False, problem)
        if obj is None:
            return TagVerdict(name, oid, False, f"object {oid[:12]} does not exist")
        if obj.type != "tag":
            if self.cfg.require_annotated or self.cfg.require_signed:
                return TagVerdict(name, oid, False,
                                  "lightweight tag: release tags must be annotated and signed "
                                  f"(git tag -s {name} -m ...)")
            if obj.type != "commit":
                return TagVerdict(name, oid, False, f"not a commit: the tag points at a {obj.type}")
            return TagVerdict(name, oid, True, "lightweight tag allowed by configuration")
        tag = parse_tag(obj)
        if tag.name != name:
            return TagVerdict(name, oid, False,
                              f"renamed tag: the tag object is named {tag.name!r}, "
                              f"pushed as {name!r}")
        if tag.target_type != "commit":
            return TagVerdict(name, oid, False,
                              f"not a commit: the tag points at a {tag.target_type or 'nothing'}")
        if tag.kind is None:
            if self.cfg.require_signed:
                return TagVerdict(name, oid, False,
                                  f"unsigned tag: release tags must be signed (git tag -s {name})")
            return TagVerdict(name, oid, True, "annotated tag; signatures not required")
        if tag.problem:
            return TagVerdict(name, oid, False, tag.problem, kind=tag.kind)
        if tag.kind not in self.cfg.formats:
            return TagVerdict(name, oid, False,
                              f"signature kind {tag.kind} is not in tags.formats "
                              f"({', '.join(self.cfg.formats)})", kind=tag.kind)
        return tag

    def _signature(self, name: str, tag: TagObject) -> TagVerdict:
        check = self._openpgp().verify(tag.payload, tag.signature) if tag.kind == "openpgp" \
            else self._ssh(tag)
        return TagVerdict(name, tag.oid, check.ok, check.reason, check.signer, tag.kind or "",
                          check.retired)

    def verify_detached(self, kind: str, payload: bytes, signature: bytes,
                        namespace: str, signed_at: float | None = None) -> SigCheck:
        """A detached ``kind`` ("openpgp" or "ssh") signature of ``payload`` (a manifest)
        against the same allow-list as tags; SSH signatures in ``namespace``, judged at
        ``signed_at`` (the manifest's own date) when this policy judges history."""
        remembered = self._verdicts(kind) if self.at is At.SIGNED else None
        key = remembered.key(kind, payload, signature, namespace, signed_at) if remembered \
            else ""
        if remembered is not None and (known := remembered.get(key)) is not None:
            return known
        if kind == "openpgp":
            verdict = self._openpgp().verify(payload, signature)
        else:
            signers, revoked = self._ssh_setup()
            verdict = verify_ssh(payload, signature, signers, revoked, namespace,
                                 signed_at if self.at is At.SIGNED else None)
        if remembered is not None:
            remembered.put(key, verdict)
        return verdict

    def _verdicts(self, kind: str) -> Verdicts:
        """The remembered verdicts of history judged by this policy for ``kind``: keyed on
        the [tags] table and the bytes of every file it reads (tags/verdicts.py)."""
        if kind not in self._remembered:
            files: list[Path | None]
            if kind == "openpgp":
                files = [self.config.path(self.cfg.openpgp_keys)]
            else:
                signers, revoked = self._ssh_setup()
                files = [signers, revoked]
            identity = "\0".join([repr(self.cfg), *(file_digest(f) for f in files)])
            self._remembered[kind] = Verdicts(self.repo.state_dir / "verdicts", identity)
        return self._remembered[kind]

    def prepare(self) -> None:
        """Build the back-ends the configuration names now, so several threads can share this
        policy (each is otherwise built on first use, which two threads could race). One
        that cannot be built is left to fail, with its sentence, where it is first used."""
        from taydash_hooks.errors import TaydashError

        if "openpgp" in self.cfg.formats and self.cfg.openpgp_fingerprints:
            with contextlib.suppress(TaydashError):
                self._openpgp()
        if "ssh" in self.cfg.formats:
            with contextlib.suppress(TaydashError):
                self._ssh_setup()

    def judge_many(self, items: list[tuple[str, str]]) -> list[TagVerdict]:
        """Verdicts for (tag name, object id) pairs; objects read in one batch."""
        objects = read_objects([oid for _, oid in items], self.repo.root)
        staged = [self._structural(n, oid, objects.get(oid)) for n, oid in items]
        todo = [(i, items[i][0], s) for i, s in enumerate(staged) if isinstance(s, TagObject)]
        # Back-ends are set up before the threads start (once, not per thread).
        if any(t.kind == "openpgp" for _, _, t in todo):
            self._openpgp()
        if any(t.kind == "ssh" for _, _, t in todo):
            self._ssh_setup()
        verdicts: list[TagVerdict | TagObject] = list(staged)
        # Two per core: each verifier is a short process, and its fork/exec
        # latency overlaps with another's work.
        workers = min(len(todo), 2 * (os.cpu_count() or 1), 8)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                results = pool.map(lambda x: self._signature(x[1], x[2]), todo)
                for (i, _, _), v in zip(todo, results, strict=True):
                    verdicts[i] = v
        else:
            for i, name, tag in todo:
                verdicts[i] = self._signature(name, tag)
        return [v for v in verdicts if isinstance(v, TagVerdict)]


def tagger_time(tagger: str) -> float | None:
    """The UNIX time of a tag's ``tagger`` header (``Name <mail> 1700000000 +0000``)."""
    parts = tagger.rsplit(" ", 2)
    return float(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def check_push(repo: git.Repo, cfg: Config, results: list[RefResult]) -> None:
    """Judge every pushed release tag line; a finding on each one's result."""
    judge: list[RefResult] = []
    with TagPolicy(repo, cfg) as policy:
        for r in results:
            u = r.update
            if not u.is_tag or not policy.is_release(u.name):
                continue
            if u.kind is Kind.DELETE:
                r.add(Finding(Word.REFUSED, "deleting a release tag is not allowed"))
            elif u.kind is Kind.TAG_MOVE:
                r.add(Finding(Word.REFUSED, f"moves release tag {u.name} that already exists on "
                                            "the remote; make a new tag instead"))
            elif u.kind is not Kind.UNCHANGED:
                judge.append(r)
        verdicts = policy.judge_many([(r.update.name, r.update.local_oid) for r in judge])
    for r, v in zip(judge, verdicts, strict=True):
        r.add(v.finding())


_NEAR_MISS = re.compile(r"(?i)(v|version[-_]?|release[-_/]?v?|rel[-_]?v?)?[0-9]+(\.[0-9]+){0,3}"
                        r"([-+._].*)?")


def looks_like_release(name: str) -> bool:
    """``V1.0.0``, ``release-1.0.0``, ``1.2``: names a person meant as a release."""
    return len(name) <= 128 and _NEAR_MISS.fullmatch(name) is not None


def check_at_creation(repo: git.Repo, cfg: Config, rows: list[tuple[str, str, str]]) -> int:
    """reference-transaction ``prepared``: refuse a non-conforming release tag at `git tag`."""
    refusals = []
    with TagPolicy(repo, cfg) as policy:
        items = []
        for old, new, ref in rows:
            name = ref[len("refs/tags/"):]
            if not policy.is_release(name):
                if looks_like_release(name):
                    warn(f"tag {name} looks like a release but tags.release "
                         f"({', '.join(policy.cfg.release)}) does not cover it: the tag policy "
                         "does not apply to it and no snapshot is taken.")
                continue
            if set(old) != {"0"}:
                refusals.append(f"{name}: moving a release tag is not allowed; make a new tag")
                continue
            items.append((name, new))
        for v in policy.judge_many(items):
            if not v.ok:
                refusals.append(f"{v.tag}: {v.reason}")
    for line in refusals:
        say(f"tag {Word.REFUSED}: {line}")
    return Exit.REFUSED if refusals else Exit.OK
