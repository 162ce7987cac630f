"""`taydash backups resign [TAG...|--all] [--yes]`: move backups to the current signing key.

After a key rotation, what the old key signed stays valid while it is listed as retired. To
revoke it later without losing those backups, each manifest is checked as every reader checks
it (judged when it was signed) and signed again with the current ``user.signingkey``; the new
signature is checked against today's policy before it replaces the old one
(:func:`taydash_hooks.snapshots.signing.replace`). An unsigned manifest is never signed: no
signature vouches for what it says, and signing it would vouch for whatever is in the store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, refused, usage
from taydash_hooks.output import out, plural, say
from taydash_hooks.snapshots import manifest, removals, signing, sums
from taydash_hooks.snapshots.binding import binding_problem
from taydash_hooks.snapshots.location import open_repo_store
from taydash_hooks.store import Store
from taydash_hooks.tags.policy import TagPolicy
from taydash_hooks.tags.signatures import At, SigCheck

Confirm = Callable[[str], bool]


class Step(enum.Enum):
    RESIGN = "re-sign"
    CURRENT = "already signed by the current key"
    UNSIGNED = "unsigned: not signed now (nothing vouches for it)"
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class Row:
    tag: str  # the tag, or the key of a retention record
    step: Step
    detail: str
    # (where, new signature) of every signature this row replaces: the manifest's, its
    # checksum list's when the backup has one; a retention record's.
    replaces: tuple[tuple[str, bytes], ...] = ()

    @property
    def what(self) -> str:
        return self.tag if self.tag.startswith(removals.PREFIX) else f"the manifest of {self.tag}"


def resign(cwd: Path, tags: list[str], every: bool, yes: bool,
           confirm: Confirm | None = None) -> int:
    """Re-sign the manifests of ``tags`` (or all with ``every``); exit 1 when one was refused
    or nothing was confirmed."""
    repo, cfg, store = open_repo_store(cwd)
    if cfg.tags is None or signing.mode(cfg) == "off":
        raise usage("backups resign needs a [tags] policy and signed_manifests other than "
                    "\"off\": there is nothing to check a signature against.")
    if bool(tags) == every:
        raise usage("name the tags to re-sign, or pass --all.")
    by = signing.signer(repo, cfg)
    if by is None:
        raise usage("nothing can sign: set user.signingkey to the current signing key.")
    rows: list[Row] = []
    with TagPolicy(repo, cfg, At.NOW) as today:
        current = _current_signer(by, today)
        for tag in (sorted(manifest.all_tags(store)) if every else tags):
            rows.append(_plan(repo, cfg, store, tag, by, today, current))
        # The records of what retention removed are signed too (snapshots/removals): a
        # revoked key would otherwise turn every pruned tag into a missing backup.
        for record in removals.read_all(repo, cfg, store):
            if every or record.tag in tags:
                row = _plan_record(store, record, by, today, current)
                if row is not None:
                    rows.append(row)
    for r in rows:
        out(f"{r.tag:<20} {r.step.value}" + (f": {r.detail}" if r.detail else ""))
    todo = [r for r in rows if r.step is Step.RESIGN]
    bad = [r for r in rows if r.step is Step.REFUSED]
    if todo:
        if not yes and not (confirm and confirm(
                f"Replace the signatures of {plural(len(todo), 'manifest')} listed above?")):
            raise refused("nothing was re-signed (confirm, or pass --yes).")
        for r in todo:
            for where, signature in r.replaces:
                signing.replace(store, where, signature)
            say(f"re-signed {r.what}: {r.detail}")
    else:
        say("nothing to re-sign.")
    return Exit.REFUSED if bad else Exit.OK


def _current_signer(by: signing.Signer, today: TagPolicy) -> str:
    """Who the current key's signatures name today ("" when they would not hold): learnt
    from one probe signature, so a backup already signed by that key costs no signature."""
    _, verdict = _signed_now(by, today, b"taydash: which key signs today?\n")
    return verdict.signer if verdict.ok else ""


def _plan(repo: git.Repo, cfg: Config, store: Store, tag: str, by: signing.Signer,
          today: TagPolicy, current: str) -> Row:
    doc = manifest.load(store, tag)
    if doc is None:
        return Row(tag, Step.REFUSED, f"no manifest for {tag} in {store.url}")
    problem = binding_problem(repo, doc, tag)
    if problem:
        return Row(tag, Step.REFUSED, problem)
    old = signing.check(repo, cfg, store, doc)  # judged when it was signed, like any reader
    if old.state is signing.State.REJECTED:
        return Row(tag, Step.REFUSED, old.text())
    if not old.allowed:
        return Row(tag, Step.UNSIGNED, "")
    listed = b""
    if store.exists(sums.key(tag)):
        with store.open(sums.key(tag)) as fh:
            listed = fh.read(sums.MAX_BYTES + 1)
        if listed != sums.listing(doc.artifacts):
            return Row(tag, Step.REFUSED, f"{sums.key(tag)} does not match the manifest")
    spares = [signing.spare(k) for k in (signing.key(tag), sums.sig_key(tag))]
    interrupted = any(store.exists(k) for k in spares)
    if old.state is signing.State.ALLOWED and current and old.signer == current \
            and not interrupted:
        return Row(tag, Step.CURRENT, "")
    new, verdict = _signed_now(by, today, doc.raw)
    if not verdict.ok:
        return Row(tag, Step.REFUSED, f"the current key's signature would not hold today: "
                                      f"{verdict.reason}")
    replaces = ((signing.key(tag), new),) + (((sums.sig_key(tag), by.sign(listed)),)
                                              if listed else ())
    if old.state is signing.State.ALLOWED and old.signer == verdict.signer:
        # An interrupted re-signing left its spare: finish it.
        return Row(tag, Step.RESIGN, "finishing an interrupted re-signing", replaces)
    return Row(tag, Step.RESIGN, f"{old.text()} -> signed by {verdict.signer}", replaces)


def _signed_now(by: signing.Signer, today: TagPolicy, data: bytes) -> tuple[bytes, SigCheck]:
    """``data`` signed with the current key, and that signature judged by today's policy
    (a new signature must hold now, not only at its own date)."""
    new = by.sign(data)
    kind = "ssh" if by.fmt == "ssh" else "openpgp"
    return new, today.verify_detached(kind, data, new, signing.NAMESPACE)


def _plan_record(store: Store, record: removals.Removal, by: signing.Signer,
                 today: TagPolicy, current: str) -> Row | None:
    """A retention record, re-signed when an allowed key other than the current one signed
    it; one that is not believed is refused (never signed: that would vouch for it); one
    believed without a signature (not required here) is left as it is (None)."""
    sig = record.signature
    if not record.believed:
        return Row(record.key, Step.REFUSED, record.why)
    if sig is None or not sig.allowed:
        return None
    where = removals.sig_key(record.tag, record.run)
    if sig.state is signing.State.ALLOWED and current and sig.signer == current \
            and not store.exists(signing.spare(where)):
        return Row(record.key, Step.CURRENT, "")
    new, verdict = _signed_now(by, today, record.data)
    if not verdict.ok:
        return Row(record.key, Step.REFUSED, "the current key's signature would not hold "
                                             f"today: {verdict.reason}")
    return Row(record.key, Step.RESIGN, f"{sig.text()} -> signed by {verdict.signer}",
               ((where, new),))
