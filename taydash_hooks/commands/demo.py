"""`taydash demo`: the whole lifecycle in a sandbox, on embedded defaults, with no set-up.

A work repository and a bare origin, hooks installed, a throwaway OpenPGP
key allowed by the policy, a validation script that first blocks a push and
then lets it through, a throwaway PostgreSQL cluster and VictoriaMetrics
(when their binaries exist), `taydash release minor --push` with snapshots
into a file:// store, and `taydash drill --last 1` restoring them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from taydash_hooks import git, process, sandbox
from taydash_hooks.errors import Exit, environment, usage

VALIDATE = """#!/bin/sh
# The demo's validation: passes once the team has added VALIDATED_OK.
if [ ! -f VALIDATED_OK ]; then
    echo "demo check: VALIDATED_OK is missing, the build is red" >&2
    exit 1
fi
echo "demo check: all good"
"""


def banner(text: str) -> None:
    print(f"\n==> {text}", flush=True)


class Demo:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home"
        self.work = base / "work"
        self.origin = base / "origin.git"
        self.store = base / "backups"
        # gpg-agent's socket path is limited to ~100 bytes: keep GNUPGHOME short.
        self.gnupg = Path(tempfile.mkdtemp(prefix="tdd-", dir="/tmp"))
        self.env = git.no_git_env()
        for var in ("TAYDASH_CONFIG", "TAYDASH_SKIP", "GNUPGHOME"):
            self.env.pop(var, None)
        self.env.update({"HOME": str(self.home), "GNUPGHOME": str(self.gnupg),
                         "GIT_CONFIG_NOSYSTEM": "1", "NO_COLOR": "1"})
        self.pg: sandbox.PgCluster | None = None
        self.vm: sandbox.VmServer | None = None

    def run(self, *argv: str, cwd: Path | None = None, ok: bool = True,
            show: bool = True) -> process.Result:
        res = process.run(list(argv), cwd=cwd or self.work, env=self.env, timeout=900)
        if show:
            for line in (res.out + res.err).rstrip().splitlines():
                print(f"    {line}")
        if ok and res.returncode != 0:
            raise environment(f"demo step failed: {' '.join(argv[:4])} exited {res.returncode}.")
        return res

    def taydash(self, *args: str, ok: bool = True) -> process.Result:
        return self.run(sys.executable, "-m", "taydash_hooks", *args, ok=ok)

    def key(self) -> str:
        gpg = ["gpg", "--batch", "--passphrase", "", "--pinentry-mode", "loopback"]
        self.run(*gpg, "--quick-gen-key", "taydash demo <demo@example.test>", "ed25519", "sign",
                 "never", cwd=self.base, show=False)
        listing = self.run("gpg", "--with-colons", "--list-keys", "demo@example.test",
                           cwd=self.base, show=False).out
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        self.run(*gpg, "--quick-add-key", fpr, "cv25519", "encr", "never", cwd=self.base, show=False)
        return fpr

    def services(self) -> list[str]:
        extra = []
        try:
            self.pg = sandbox.start_postgres()
            self.pg.psql("CREATE DATABASE demo")
            self.pg.psql("CREATE TABLE readings (id int primary key, sensor text, value float);"
                         "INSERT INTO readings SELECT g, 'sensor-' || (g % 5), random() "
                         "FROM generate_series(1, 1000) g", db="demo")
            print(f"    PostgreSQL on 127.0.0.1:{self.pg.port}, database demo (1000 rows)")
            extra.append(f'[snapshots.postgres]\ndatabases = ["demo"]\nhost = "127.0.0.1"\n'
                         f'port = {self.pg.port}\nuser = "postgres"\n')
        except (FileNotFoundError, RuntimeError, OSError, KeyError) as exc:
            print(f"    PostgreSQL: not available here ({exc}); skipping database snapshots")
        if shutil.which("victoria-metrics") and shutil.which("vmbackup"):
            self.vm = sandbox.start_vm(self.base / "vm-data")
            self.vm.ingest('demo_temperature{sensor="s1"} 21.5\ndemo_temperature{sensor="s2"} 19\n')
            print(f"    VictoriaMetrics on {self.vm.url}, 2 samples")
            extra.append(f'[snapshots.victoriametrics]\nurl = "{self.vm.url}"\n'
                         f'storage_data_path = "{self.vm.storage}"\n')
        else:
            print("    VictoriaMetrics: victoria-metrics/vmbackup not found "
                  "(apt-get install victoria-metrics); skipping metric snapshots")
        return extra

    def close(self) -> None:
        if self.pg:
            self.pg.stop()
        if self.vm:
            self.vm.stop()
        with contextlib.suppress(Exception):
            process.run(["gpgconf", "--homedir", str(self.gnupg), "--kill", "all"], timeout=30)
        shutil.rmtree(self.gnupg, ignore_errors=True)


@contextlib.contextmanager
def _demo(base: Path) -> Iterator[Demo]:
    demo = Demo(base)
    try:
        yield demo
    finally:
        demo.close()


def run(directory: Path | None) -> int:
    """Run the demo in ``directory`` (default: a new temporary folder)."""
    if directory is not None and directory.exists() and any(directory.iterdir()):
        raise usage(f"{directory} is not empty; the demo needs an empty or new folder.")
    base = directory or Path(tempfile.mkdtemp(prefix="taydash-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    base = base.resolve()
    with _demo(base) as d:
        banner(f"sandbox in {base}")
        d.home.mkdir()
        fpr = d.key()
        print(f"    throwaway OpenPGP key {fpr}")
        (d.home / ".gitconfig").write_text(
            "[user]\n\tname = Demo Dev\n\temail = demo@example.test\n"
            f"\tsigningkey = {fpr}\n[init]\n\tdefaultBranch = main\n")
        banner("a work repository and a bare origin")
        d.run("git", "init", "-q", "--bare", "-b", "main", str(d.origin), cwd=base)
        d.run("git", "init", "-q", "-b", "main", str(d.work), cwd=base)
        d.run("git", "remote", "add", "origin", str(d.origin))
        banner("throwaway services")
        extra = d.services()
        (d.work / "ops").mkdir()
        (d.work / "ops" / "validate.sh").write_text(VALIDATE)
        (d.work / "ops" / "validate.sh").chmod(0o755)
        (d.work / ".taydash").mkdir()
        keys = d.run("gpg", "--armor", "--export", fpr, show=False).out
        (d.work / ".taydash" / "keys.asc").write_text(keys)
        (d.work / ".env").write_text("DEMO_SETTING=on\n")
        (d.work / ".gitignore").write_text(".env\n")
        (d.work / ".taydash.toml").write_text(
            '[validate]\ncommands = ["./ops/validate.sh"]\ntimeout = 120\n\n'
            '[push]\nprotected = ["main"]\n\n'
            f'[tags]\nopenpgp_fingerprints = ["{fpr}"]\nformats = ["openpgp"]\n\n'
            f'[snapshots]\non_tag = ["v*"]\nstore = "file://{d.store}"\n\n'
            + "\n".join(extra)
            + '\n[snapshots.config]\npaths = [".env"]\nrecipients = ["demo@example.test"]\n')
        print("    .taydash.toml: validate, protected main, signed v* tags, snapshots -> "
              f"file://{d.store}")
        banner("taydash install")
        d.taydash("install")
        d.run("git", "add", "-A")
        d.run("git", "commit", "-q", "-m", "feat: sensor pipeline")
        banner("git push: the validation fails on the pushed commit, so the push is blocked")
        blocked = d.run("git", "push", "origin", "main", ok=False)
        if blocked.returncode == 0:
            raise environment("the demo expected the first push to be blocked.")
        banner("fix the build, commit, push again: validated and pushed")
        (d.work / "VALIDATED_OK").write_text("yes\n")
        d.run("git", "add", "VALIDATED_OK")
        d.run("git", "commit", "-q", "-m", "fix: make the demo check pass")
        d.run("git", "push", "origin", "main")
        banner("taydash release minor: signed tag v0.1.0, snapshots, push, confirm")
        d.taydash("release", "minor", "first demo milestone", "--yes", "--push")
        banner("taydash check-tags --all")
        d.taydash("check-tags", "--all")
        banner("taydash drill --last 1: fresh clone, validation, signature, real restores")
        d.taydash("drill", "--last", "1")
        banner("taydash health")
        d.taydash("health")
        doc = json.loads(d.run(sys.executable, "-m", "taydash_hooks", "backups", "show", "v0.1.0",
                               "--json", show=False).out)
    banner("done; look at:")
    print(f"    work repository   {d.work}")
    print(f"    bare origin       {d.origin}")
    print(f"    backups           {d.store}")
    print(f"    manifest          {d.store / 'manifests' / 'v0.1.0.json'}")
    for art in doc.get("artifacts", []):
        print(f"    artifact          {d.store / art['key']}")
    return Exit.OK
