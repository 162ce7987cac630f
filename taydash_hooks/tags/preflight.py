"""The tag signatures' own checks for `taydash doctor`: the signing key (there, allowed,
not about to expire), the committed public keys, and release tags signed only by retired keys."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from taydash_hooks import git, gnupg, process
from taydash_hooks.config import Config
from taydash_hooks.errors import TaydashError
from taydash_hooks.results import Check

EXPIRY_WARNING_DAYS = 30


def preflight(repo: git.Repo, cfg: Config) -> list[Check]:
    """Every check of the signing side, in the order doctor prints them."""
    found: list[Check] = []
    if not repo.bare:
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
    found += _retired_tags(repo, cfg)
    return found


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


def _retired_tags(repo: git.Repo, cfg: Config) -> list[Check]:
    """Release tags signed only by a retired key: they hold while the key stays retired."""
    if cfg.tags is None or not cfg.tags.retired_openpgp_fingerprints:
        return []
    from taydash_hooks.tags.policy import TagPolicy
    from taydash_hooks.tags.releases import release_tags
    from taydash_hooks.tags.signatures import At

    tags = [(t, oid) for t, _ in release_tags(repo, cfg)
            if (oid := git.rev_parse(f"refs/tags/{t}", repo.root))]
    with TagPolicy(repo, cfg, At.SIGNED) as policy:
        old_tags = [v.tag for v in policy.judge_many(tags) if v.ok and v.retired]
    return [Check("release tags by retired keys", not old_tags,
                  f"{len(old_tags)}: {', '.join(old_tags[:10])}" if old_tags else "none",
                  "keep those keys retired, never revoked, while these tags are drilled",
                  warning=True)]
