"""The store's own checks for `taydash doctor`: credentials, reachable, what the server
really does (versioning, conditional writes, Object Lock, default encryption), free space,
and backups signed only by retired keys."""

from __future__ import annotations

import tempfile
from pathlib import Path

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.errors import TaydashError
from taydash_hooks.results import Check
from taydash_hooks.store import Store


def preflight(repo: git.Repo, cfg: Config) -> list[Check]:
    """Every check of the store side (none without [snapshots])."""
    if cfg.snapshots is None:
        return []
    return [free("staging free space", Path(tempfile.gettempdir())), *_store(repo, cfg),
            *_retired_backups(repo, cfg)]


def _store(repo: git.Repo, cfg: Config) -> list[Check]:
    if cfg.snapshots is None:
        return []
    from taydash_hooks.snapshots.location import open_store
    from taydash_hooks.store.s3 import NoCredentials

    try:
        store = open_store(repo, cfg)
        health = store.health()
    except NoCredentials as exc:
        return [Check("S3 credentials", False, "no credentials variables are set",
                      f"export {exc.export}")]
    except TaydashError as exc:
        return [Check("store", False, exc.message, "check [snapshots] store and the server")]
    found = [Check("store", health.ok, health.detail, health.fix)]
    if health.ok and health.versioning is not None:
        found.append(_features(store, cfg))
    root = store.properties().local_root
    if root is not None and root.is_dir():
        found.append(free("store free space", root))
    if health.ok and health.encryption is not None:
        # VictoriaMetrics backups are written by vmbackup: only the bucket can encrypt them.
        has = bool(health.encryption)
        found.append(Check("bucket default encryption", has or not cfg.snapshots.encrypt_to,
                             health.encryption or "off",
                             f"turn on the bucket's default encryption ({_encryption_fix(store)}): "
                             "encrypt_to covers the dumps, not vmbackup's files"))
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
        listing = _lists_versions(store)
        if health.versioning != "Enabled" and listing is False:
            # A server that cannot even list versions cannot keep them: store init cannot
            # help there; said as what it is, a gap to accept or a server to change.
            found.append(Check("bucket versioning", False,
                               f"{health.versioning}: this server keeps no versions",
                               "use a server that versions (MinIO, AWS S3); snapshots work "
                               "without it, but an overwritten or deleted backup cannot be "
                               "recovered", warning=True))
        else:
            found.append(Check("bucket versioning", health.versioning == "Enabled",
                               health.versioning,
                               f"taydash store init --yes (or: aws s3api put-bucket-versioning "
                               f"--bucket {bucket} --versioning-configuration Status=Enabled; "
                               f"or: mc version enable ALIAS/{bucket})"))
    return found


FREE_WARNING = 1024 ** 3  # bytes: below a GiB, a dump or a restore's spool may not fit


def free(name: str, where: Path) -> Check:
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


def _lists_versions(store: Store) -> bool | None:
    """Whether the server lists object versions (probed; None when it cannot be asked)."""
    try:
        return store.features().version_listing
    except TaydashError:
        return None


def _encryption_fix(store: Store) -> str:
    """The command that turns default encryption on, with the S3 client this host has (aws,
    mc; both named when it has neither or both)."""
    import shutil

    bucket = store.properties().bucket or "BUCKET"
    aws = (f"aws s3api put-bucket-encryption --bucket {bucket} "
           "--server-side-encryption-configuration "
           "'{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":{\"SSEAlgorithm\":\"AES256\"}}]}'")
    mc = f"mc encrypt set sse-s3 ALIAS/{bucket}"
    has_aws, has_mc = bool(shutil.which("aws")), bool(shutil.which("mc"))
    if has_aws and not has_mc:
        return aws
    if has_mc and not has_aws:
        return mc
    return f"{aws}; or: {mc}"


def _retired_backups(repo: git.Repo, cfg: Config) -> list[Check]:
    """Backups signed only by a retired key: they hold, but only while the key stays listed
    as retired; revoking it would take them (resign the backups first)."""
    if cfg.tags is None or not cfg.tags.retired_openpgp_fingerprints:
        return []
    from taydash_hooks.snapshots import manifest, signing
    from taydash_hooks.snapshots.location import open_store

    try:
        store = open_store(repo, cfg)
        old = sorted(d.tag for d in manifest.load_all(store)
                     if signing.check(repo, cfg, store, d).state is signing.State.RETIRED)
    except TaydashError as exc:
        return [Check("backups signed by retired keys", False, exc.message)]
    return [Check("backups signed by retired keys", not old,
                  f"{len(old)}: {', '.join(old[:10])}" if old else "none",
                  "taydash backups resign --all (then the old key can be revoked)",
                  warning=True)]
