"""`taydash doctor`: every check with OK/FAIL and the exact fix. Exit 0 only when all pass."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from taydash_hooks import git, gnupg, process
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError
from taydash_hooks.output import color
from taydash_hooks.results import Check
from taydash_hooks.snapshots.kinds.place import tool_check
from taydash_hooks.store import Store


def _signing(root: Path, allowed: tuple[str, ...] | None = None,
             signers_file: Path | None = None) -> list[Check]:
    def cfg(key: str) -> str:
        return git.git("config", "--get", key, cwd=root, check=False).out.strip()

    fmt = cfg("gpg.format") or "openpgp"
    key = cfg("user.signingkey")
    found = [Check("signing format", True, fmt)]
    if fmt == "ssh":
        if not key:
            found.append(Check("signing key", False, "user.signingkey is not set",
                                 "git config user.signingkey ~/.ssh/id_ed25519.pub"))
        else:
            found.append(Check("signing key", Path(os.path.expanduser(key)).exists()
                                 or key.startswith(("ssh-", "key::")), key,
                                 "point user.signingkey at an existing SSH key file"))
        signers = cfg("gpg.ssh.allowedSignersFile")
        found.append(Check("gpg.ssh.allowedSignersFile", bool(signers), signers or "not set",
                             "gpg.format=ssh needs it to verify tags: git config "
                             "gpg.ssh.allowedSignersFile .taydash/allowed_signers"))
        if key and signers_file is not None:
            found += _ssh_key_health(key, signers_file)
        return found
    if not key:
        fprs = _secret_fingerprints()
        fix = (f"git config user.signingkey {fprs[0]}" if fprs else
               "gpg --quick-generate-key 'Your Name <you@example.com>' default default never, "
               "then git config user.signingkey <the fingerprint it prints>")
        found.append(Check("signing key", False, "user.signingkey is not set", fix))
        return found
    secret: list[gnupg.Key] = []
    try:
        secret, res = gnupg.list_keys(key, secret=True, timeout=30)
        ok = res.returncode == 0 and bool(secret)
    except (process.Timeout, TaydashError):
        ok = False
    found.append(Check("signing key", ok, key if ok else f"no secret key {key} in the keyring",
                         "import the secret key (gpg --import) or fix user.signingkey"))
    if ok:
        found += _openpgp_key_health(key, secret[0], allowed)
    return found


EXPIRY_WARNING_DAYS = 30


def _openpgp_key_health(key: str, secret: gnupg.Key,
                        allowed: tuple[str, ...] | None) -> list[Check]:
    """The monthly "credential recovery" check: is the signing key one the tag policy allows,
    and does it expire within 30 days (then every tag and manifest it signs will be refused)?"""
    import time

    fpr = secret.fingerprint
    found = []
    if allowed is not None:
        found.append(Check("signing key allowed", fpr.upper() in allowed,
                           f"{fpr} is in tags.openpgp_fingerprints" if fpr.upper() in allowed
                           else f"{fpr or key} is not in tags.openpgp_fingerprints: the tags it "
                                "signs are refused",
                           f"add {fpr} to [tags] openpgp_fingerprints (and export it into "
                           "tags.openpgp_keys), or sign with an allowed key"))
    expires = secret.expires
    if expires is not None:
        days = (expires - time.time()) / 86400
        found.append(Check("signing key expiry", days > EXPIRY_WARNING_DAYS,
                           f"expires in {days:.0f} days ({time.strftime('%Y-%m-%d', time.gmtime(expires))})",
                           f"extend it now: gpg --quick-set-expire {fpr} 1y (then re-export the "
                           "public key into tags.openpgp_keys)"))
    return found


def _ssh_key_health(key: str, signers_file: Path) -> list[Check]:
    """The SSH key's line in tags.allowed_signers: there at all, and its valid-before."""
    import re
    import time

    path = Path(os.path.expanduser(key))
    public = path if path.suffix == ".pub" else path.with_name(path.name + ".pub")
    try:
        blob = (key[5:] if key.startswith("key::") else public.read_text()).split()[1]
        lines = signers_file.read_text().splitlines()
    except (OSError, IndexError):
        return []
    line = next((ln for ln in lines if blob in ln and not ln.lstrip().startswith("#")), None)
    if line is None:
        return [Check("signing key allowed", False, f"{key} is not in {signers_file}: the tags "
                      "it signs are refused", f"add its line to {signers_file}")]
    found = [Check("signing key allowed", True, f"in {signers_file}")]
    m = re.search(r'valid-before="?([0-9]{8})', line)
    if m:
        until = time.mktime(time.strptime(m.group(1), "%Y%m%d"))
        days = (until - time.time()) / 86400
        found.append(Check("signing key expiry", days > EXPIRY_WARNING_DAYS,
                           f"valid-before {m.group(1)} in {signers_file} ({days:.0f} days)",
                           f"extend valid-before in {signers_file} (or rotate the key)"))
    return found


def _secret_fingerprints() -> list[str]:
    """Fingerprints of the secret keys in the user's keyring (the fix names a real one)."""
    try:
        found, _ = gnupg.list_keys(secret=True, timeout=30)
    except (process.Timeout, TaydashError):
        return []
    return [k.fingerprint for k in found]


def _store(repo: git.Repo, cfg: Config) -> list[Check]:
    if cfg.snapshots is None:
        return []
    from taydash_hooks.snapshots.location import open_store

    url = cfg.snapshots.store or "file:// (default)"
    if url.startswith("s3://"):
        from taydash_hooks.store.s3 import CREDENTIAL_VARS, credentials

        try:
            credentials()
        except TaydashError:
            names = " or ".join(f"{a}/{s}" for a, s in CREDENTIAL_VARS)
            return [Check("S3 credentials", False, "no credentials variables are set",
                            f"export {names}")]
    try:
        store = open_store(repo, cfg)
        health = store.health()
    except TaydashError as exc:
        return [Check("store", False, exc.message, "check [snapshots] store and the server")]
    found = [Check("store", health.ok, health.detail, health.fix)]
    if health.ok and health.versioning is not None:
        found.append(_features(store, cfg))
    root = store.properties().local_root
    if root is not None and root.is_dir():
        found.append(_free("store free space", root))
    if health.ok and health.encryption is not None:
        # VictoriaMetrics backups are written by vmbackup: only the bucket can encrypt them.
        has = bool(health.encryption)
        found.append(Check("bucket default encryption", has or not cfg.snapshots.encrypt_to,
                             health.encryption or "off",
                             "turn on the bucket's default encryption (mc encrypt set sse-s3 "
                             "ALIAS/BUCKET): encrypt_to covers the dumps, not vmbackup's files"))
    lock_days = cfg.snapshots.s3.object_lock_days if cfg.snapshots.s3 else 0
    if health.ok and lock_days > 0:
        found.append(Check("bucket Object Lock", bool(health.object_lock),
                             "enabled" if health.object_lock else
                             f"off, but object_lock_days = {lock_days} (every upload would fail "
                             "with InvalidRequest)",
                             "use a bucket created with Object Lock (mc mb --with-lock ALIAS/NAME; "
                             "it cannot be switched on later), or set object_lock_days = 0"))
    if health.ok and health.versioning is not None:
        bucket = cfg.snapshots.store[len("s3://"):].partition("/")[0]
        found.append(Check("bucket versioning", health.versioning == "Enabled", health.versioning,
                             f"taydash store init --yes (or: aws s3api put-bucket-versioning "
                             f"--bucket {bucket} --versioning-configuration Status=Enabled; or: "
                             f"mc version enable ALIAS/{bucket})"))
    return found


FREE_WARNING = 1024 ** 3  # bytes: below a GiB, a dump or a restore's spool may not fit


def _free(name: str, where: Path) -> Check:
    """Free space where dumps or restores are staged (``--jobs``, the VictoriaMetrics
    checks) or stored (a file:// store)."""
    import shutil

    free = shutil.disk_usage(where).free
    return Check(name, free >= FREE_WARNING, f"{free / 1024 ** 3:.1f} GiB free in {where}",
                 f"free space in {where} (or point TMPDIR elsewhere for staging)")


def _features(store: Store, cfg: Config) -> Check:
    """What the S3 server really does, probed afresh (the cached probe is refreshed here)."""
    try:
        found = store.features(refresh=True)
    except TaydashError as exc:
        return Check("store features", False, exc.message)
    gaps = found.missing()
    single = bool(cfg.snapshots and cfg.snapshots.s3 and cfg.snapshots.s3.unsafe_single_writer)
    blocking = [g for g in gaps if not (single and g.startswith("conditional"))]
    return Check("store features", not blocking,
                 "conditional writes, version listing, versioning" + (", Object Lock" if
                                                                      found.object_lock else "")
                 if not gaps else f"missing: {', '.join(gaps)}",
                 "use a server that has them (MinIO, AWS S3); without conditional writes, "
                 "[snapshots.s3] unsafe_single_writer = true if only one machine ever snapshots")


def _hooks(cwd: Path, server: bool = False) -> list[Check]:
    from taydash_hooks.install import CLIENT_HOOKS, SERVER_HOOKS, hooks_dir, is_ours

    try:
        folder = hooks_dir(cwd, force=True)
    except TaydashError as exc:
        return [Check("hooks", False, exc.message)]
    names, fix = (SERVER_HOOKS, "taydash install --server") if server else (CLIENT_HOOKS,
                                                                            "taydash install")
    return [Check(f"{hook} hook", is_ours(folder / hook) or is_ours(folder / f"{hook}.legacy"),
                    str(folder / hook), fix) for hook in names]


def checks(cwd: Path) -> list[Check]:
    """Every finding, in the order they are printed."""
    from taydash_hooks import config as config_mod

    found = [tool_check("git", "git")]
    try:
        repo = git.find_repo(cwd)
    except TaydashError as exc:
        return [*found, Check("repository", False, exc.message, "run inside a git repository")]
    try:
        cfg = config_mod.load(repo)
        found.append(Check("configuration", True, str(cfg.source or "none (nothing enabled)")))
    except TaydashError as exc:
        return [*found, Check("configuration", False, exc.message, "fix the key named above")]
    ssh = bool(cfg.tags and "ssh" in cfg.tags.formats)
    found += [tool_check("gpg", "gnupg"), tool_check("ssh-keygen", "openssh-client", ssh)]
    if repo.bare:
        found += _hooks(cwd, server=True)
    else:
        found += _hooks(cwd)
        allowed = cfg.tags.openpgp_fingerprints if cfg.tags and "openpgp" in cfg.tags.formats \
            else None
        signers = cfg.path(cfg.tags.allowed_signers) if cfg.tags and "ssh" in cfg.tags.formats \
            else None
        found += _signing(repo.root, allowed, signers)
    if cfg.tags is not None and "openpgp" in cfg.tags.formats and cfg.tags.openpgp_fingerprints:
        keys = cfg.path(cfg.tags.openpgp_keys)
        # A fix that works when pasted: the real fingerprints, and the folder made first.
        rel = shlex.quote(cfg.tags.openpgp_keys)
        folder = shlex.quote(str(Path(cfg.tags.openpgp_keys).parent))
        fprs = " ".join(cfg.tags.openpgp_fingerprints)
        found.append(Check("tags.openpgp_keys", keys.is_file(), str(keys),
                             f"mkdir -p {folder} && gpg --export --armor {fprs} > {rel}"))
    found += _kinds(cfg)
    if cfg.snapshots is not None:
        import tempfile

        found.append(_free("staging free space", Path(tempfile.gettempdir())))
    found += _store(repo, cfg)
    found += _retired_signatures(repo, cfg)
    return found


def _retired_signatures(repo: git.Repo, cfg: Config) -> list[Check]:
    """Backups and release tags signed only by a retired key: they hold, but only while the
    key stays listed as retired; revoking it would take them (resign the backups first)."""
    if cfg.tags is None or not cfg.tags.retired_openpgp_fingerprints:
        return []
    found = []
    if cfg.snapshots is not None:
        from taydash_hooks.snapshots import manifest, signing
        from taydash_hooks.snapshots.location import open_store

        try:
            store = open_store(repo, cfg)
            old = sorted(d.tag for d in manifest.load_all(store)
                         if signing.check(repo, cfg, store, d).state is signing.State.RETIRED)
        except TaydashError as exc:
            return [Check("backups signed by retired keys", False, exc.message)]
        found.append(Check("backups signed by retired keys", not old,
                           f"{len(old)}: {', '.join(old[:10])}" if old else "none",
                           "taydash backups resign --all (then the old key can be revoked)",
                           warning=True))
    from taydash_hooks.tags.policy import TagPolicy
    from taydash_hooks.tags.releases import release_tags
    from taydash_hooks.tags.signatures import At

    tags = [(t, oid) for t, _ in release_tags(repo, cfg)
            if (oid := git.rev_parse(f"refs/tags/{t}", repo.root))]
    with TagPolicy(repo, cfg, At.SIGNED) as policy:
        old_tags = [v.tag for v in policy.judge_many(tags) if v.ok and v.retired]
    found.append(Check("release tags by retired keys", not old_tags,
                       f"{len(old_tags)}: {', '.join(old_tags[:10])}" if old_tags else "none",
                       "keep those keys retired, never revoked, while these tags are drilled",
                       warning=True))
    return found


def _kinds(cfg: Config) -> list[Check]:
    """Each enabled snapshot kind's own checks (tools, its service, its keys), then the
    ``encrypt_to`` recipients every dump is encrypted to."""
    snap = cfg.snapshots
    if snap is None:
        return []
    from taydash_hooks.snapshots import kinds
    from taydash_hooks.snapshots.crypt import recipient_check

    found = []
    for name, kind in kinds.registry().items():
        if name in snap.kinds and kind.configured(cfg):
            found += kind.preflight(cfg)
    seen = {c.name for c in found}
    found += [c for c in map(recipient_check, snap.encrypt_to) if c.name not in seen]
    return found


def run(cwd: Path) -> int:
    found = checks(cwd)
    out = sys.stdout
    for f in found:
        mark = color("OK  ", "green", out) if f.ok else color("WARN", "yellow", out) \
            if f.warning else color("FAIL", "red", out)
        print(f"{mark} {f.name:<28} {f.detail}")
        if not f.ok and f.fix:
            print(f"     fix: {f.fix}")
    return Exit.OK if all(f.ok or f.warning for f in found) else Exit.REFUSED
