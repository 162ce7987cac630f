"""`taydash doctor`: every check with OK/FAIL and the exact fix. Exit 0 only when all pass."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from taydash_hooks import git, process
from taydash_hooks.config import Config
from taydash_hooks.errors import Exit, TaydashError
from taydash_hooks.output import color
from taydash_hooks.results import Check


def _tool(name: str, package: str, needed: bool, prefix: tuple[str, ...] = ()) -> Check:
    """``name`` on PATH, or inside the container ``prefix`` reaches when it is set."""
    if prefix and needed:
        from taydash_hooks.snapshots.kinds.place import Inside

        inside = Inside(prefix)
        try:
            ok = inside.found(name)
        except TaydashError as exc:
            return Check(name, False, exc.message, f"check the exec prefix {' '.join(prefix)}")
        return Check(name, ok, f"found{inside.label}" if ok else f"not found{inside.label}",
                       f"use an image that has {name} ({package})")
    path = shutil.which(name)
    if path:
        return Check(name, True, path)
    if not needed:
        return Check(name, True, "not found (not needed by this configuration)")
    return Check(name, False, "not found on PATH", f"apt-get install {package}")


def _signing(root: Path) -> list[Check]:
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
        return found
    if not key:
        secret = _secret_fingerprints()
        fix = (f"git config user.signingkey {secret[0]}" if secret else
               "gpg --quick-generate-key 'Your Name <you@example.com>' default default never, "
               "then git config user.signingkey <the fingerprint it prints>")
        found.append(Check("signing key", False, "user.signingkey is not set", fix))
        return found
    try:
        res = process.run(["gpg", "--batch", "--list-secret-keys", "--", key], timeout=30)
        ok = res.returncode == 0
    except (process.Timeout, TaydashError):
        ok = False
    found.append(Check("signing key", ok, key if ok else f"no secret key {key} in the keyring",
                         "import the secret key (gpg --import) or fix user.signingkey"))
    return found


def _secret_fingerprints() -> list[str]:
    """Fingerprints of the secret keys in the user's keyring (the fix names a real one)."""
    try:
        res = process.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], timeout=30)
    except (process.Timeout, TaydashError):
        return []
    fprs, after_sec = [], False
    for line in res.out.splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            after_sec = True
        elif fields[0] == "fpr" and after_sec and len(fields) > 9:
            fprs.append(fields[9])
            after_sec = False
    return fprs


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
        health = open_store(repo, cfg).health()
    except TaydashError as exc:
        return [Check("store", False, exc.message, "check [snapshots] store and the server")]
    found = [Check("store", health.ok, health.detail, health.fix)]
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
                             f"mc version enable ALIAS/{bucket} (or allow "
                             "s3:PutBucketVersioning for these credentials)"))
    return found


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

    found = [_tool("git", "git", True)]
    try:
        repo = git.find_repo(cwd)
    except TaydashError as exc:
        return [*found, Check("repository", False, exc.message, "run inside a git repository")]
    try:
        cfg = config_mod.load(repo)
        found.append(Check("configuration", True, str(cfg.source or "none (nothing enabled)")))
    except TaydashError as exc:
        return [*found, Check("configuration", False, exc.message, "fix the key named above")]
    snap = cfg.snapshots
    pg = bool(snap and snap.postgres and "postgres" in snap.kinds)
    vm = bool(snap and snap.victoriametrics and "victoriametrics" in snap.kinds)
    ssh = bool(cfg.tags and "ssh" in cfg.tags.formats)
    found += [
        _tool("gpg", "gnupg", True),
        _tool("ssh-keygen", "openssh-client", ssh),
    ]
    pg_exec = snap.postgres.exec if pg and snap and snap.postgres else ()
    found += [_tool(tool, "postgresql-client", pg, pg_exec)
              for tool in ("pg_dump", "pg_restore", "pg_dumpall")]
    vcfg = snap.victoriametrics if vm and snap else None
    found += [
        _tool(vcfg.vmbackup if vcfg else "vmbackup", "victoria-metrics (it brings vmbackup)", vm,
              vcfg.exec if vcfg else ()),
        _tool(vcfg.vmrestore if vcfg else "vmrestore", "victoria-metrics (it brings vmrestore)",
              vm, vcfg.exec if vcfg else ()),
    ]
    if repo.bare:
        found += _hooks(cwd, server=True)
    else:
        found += _hooks(cwd)
        found += _signing(repo.root)
    if cfg.tags is not None and "openpgp" in cfg.tags.formats and cfg.tags.openpgp_fingerprints:
        keys = cfg.path(cfg.tags.openpgp_keys)
        # A fix that works when pasted: the real fingerprints, and the folder made first.
        rel = shlex.quote(cfg.tags.openpgp_keys)
        folder = shlex.quote(str(Path(cfg.tags.openpgp_keys).parent))
        fprs = " ".join(cfg.tags.openpgp_fingerprints)
        found.append(Check("tags.openpgp_keys", keys.is_file(), str(keys),
                             f"mkdir -p {folder} && gpg --export --armor {fprs} > {rel}"))
    found += _services(cfg)
    found += _recipients(cfg)
    found += _store(repo, cfg)
    return found


def _services(cfg: Config) -> list[Check]:
    """Can the snapshot reach what it dumps? (A wrong port fails here, not at `git tag`.)"""
    snap = cfg.snapshots
    found = []
    if snap and snap.postgres and "postgres" in snap.kinds:
        p = snap.postgres
        argv = [*p.exec, "psql", "-h", p.host, "-p", str(p.port), "-U", p.user, "--no-password",
                "-X", "-tA", f"--dbname={p.databases[0] if p.databases else 'postgres'}",
                "-c", "SELECT 1"]
        try:
            res = process.run(argv, timeout=15)
            ok, detail = res.returncode == 0, " / ".join(res.err.strip().splitlines()[:2])
        except (process.Timeout, TaydashError) as exc:
            ok, detail = False, str(exc)
        found.append(Check("PostgreSQL", ok, f"{p.host}:{p.port} as {p.user}" if ok else detail,
                             f"check [snapshots.postgres] host, port and user (pg_isready -h "
                             f"{p.host} -p {p.port}); passwords come from ~/.pgpass or PGPASSWORD"))
    if snap and snap.victoriametrics and "victoriametrics" in snap.kinds:
        import urllib.request

        url = snap.victoriametrics.url.rstrip("/")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:  # noqa: S310
                ok, detail = resp.status == 200, url
        except OSError as exc:
            ok, detail = False, f"{url} is not reachable ({getattr(exc, 'reason', exc)})"
        found.append(Check("VictoriaMetrics", ok, detail,
                             "check [snapshots.victoriametrics] url; is VictoriaMetrics running?"))
        if snap.victoriametrics.exec and snap.store.startswith("file://"):
            found.append(Check("VictoriaMetrics store", False,
                                 "vmbackup inside the container cannot write to a file:// store",
                                 "use an s3:// store (and s3_endpoint as seen from inside)"))
    return found


def _recipients(cfg: Config) -> list[Check]:
    """Every config-bundle recipient has a public key that can encrypt."""
    snap = cfg.snapshots
    if snap is None:
        return []
    bundle = snap.config.recipients if snap.config and snap.config.paths else ()
    everyone = list(dict.fromkeys([*bundle, *snap.encrypt_to]))
    from taydash_hooks.tags.signatures import gpg_program

    found = []
    for who in everyone:
        try:
            res = process.run([gpg_program(), "--batch", "--with-colons", "--list-keys", "--", who],
                              timeout=30)
        except (process.Timeout, TaydashError) as exc:
            found.append(Check(f"recipient {who}", False, str(exc)))
            continue
        pubs = [line.split(":") for line in res.out.splitlines() if line.startswith("pub:")]
        # Field 12 holds the key's usable capabilities; a capital E: it can encrypt.
        can = [p for p in pubs if len(p) > 11 and "E" in p[11] and p[1] not in ("r", "e")]
        if not pubs:
            found.append(Check(f"recipient {who}", False, "no public key in the keyring",
                                 "gpg --import THEIR-PUBLIC-KEY.asc (or fix [snapshots] "
                                 "encrypt_to / [snapshots.config] recipients)"))
        elif not can:
            fpr = next((line.split(":")[9] for line in res.out.splitlines()
                        if line.startswith("fpr:")), who)
            found.append(Check(f"recipient {who}", False,
                                 "the key has no usable encryption subkey (gpg would fail with "
                                 "'encryption failed: No name')",
                                 f"gpg --quick-add-key {fpr} cv25519 encr (with the secret key), "
                                 "or name a recipient whose key can encrypt"))
        else:
            found.append(Check(f"recipient {who}", True, "can encrypt"))
    return found


def run(cwd: Path) -> int:
    found = checks(cwd)
    out = sys.stdout
    for f in found:
        mark = color("OK  ", "green", out) if f.ok else color("FAIL", "red", out)
        print(f"{mark} {f.name:<28} {f.detail}")
        if not f.ok and f.fix:
            print(f"     fix: {f.fix}")
    return Exit.OK if all(f.ok for f in found) else Exit.REFUSED
