"""`taydash demo`: the whole lifecycle in a sandbox, on embedded defaults, with no set-up.

A work repository and a bare origin, hooks installed, a throwaway OpenPGP
key allowed by the policy, a validation script that first blocks a push and
then lets it through, a throwaway PostgreSQL cluster and VictoriaMetrics
(when their binaries exist), `taydash release minor --push` with snapshots
into a file:// store, and `taydash drill --last 1` restoring them.

With ``--compose`` the services are the team's docker compose stack instead: on a
private Docker daemon where one can start here, else emulated with mount namespaces
(see containers/), reached only through ``docker compose exec -T``, with snapshots
into an S3 server on loopback.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taydash_hooks import git, gnupg, process, sandbox
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
        self.stack: Any = None  # containers.Stack with --compose
        self.s3: Any = None  # moto's server with --compose
        self.store_url = f"file://{self.store}"

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
        gpg = gnupg.argv("--passphrase", "", "--pinentry-mode", "loopback")
        self.run(*gpg, "--quick-gen-key", "taydash demo <demo@example.test>", "ed25519", "sign",
                 "never", cwd=self.base, show=False)
        listing = self.run(*gnupg.argv("--with-colons", "--fixed-list-mode", "--list-keys",
                                       "demo@example.test"), cwd=self.base, show=False).out
        fpr = gnupg.parse_colons(listing)[0].fingerprint
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

    def compose_services(self) -> list[str]:
        """The compose stack: PostgreSQL 18 and VictoriaMetrics in containers (real Docker when
        it can run here, else the emulation), an S3 server on loopback for the store (vmbackup
        inside cannot reach a host folder)."""
        from taydash_hooks import containers

        bindir = containers.embedded_pg_bindir() or sandbox.pg_bindir()
        binary = shutil.which("victoria-metrics")
        if not bindir or not binary or not shutil.which("vmbackup"):
            raise environment("demo --compose needs PostgreSQL's server binaries and "
                              "victoria-metrics: make demo installs both.")
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise environment("demo --compose keeps its backups in S3 and uses moto's server for "
                              "it: pip install 'moto[server]' (make demo installs it).") from None
        try:
            self.stack = containers.start_stack(self.base / "compose", bindir, binary)
        except PermissionError as exc:
            raise environment(f"demo --compose: {exc}.") from None
        if self.stack.engine == "docker":
            print("    engine: real Docker (a private dockerd; images made here with docker "
                  "import; docker-compose behind `docker compose`)")
        else:
            print(f"    engine: emulated with mount namespaces (real Docker could not run here: "
                  f"{self.stack.note})")
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        port = sandbox.free_port()
        self.s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.s3.start()
        secret = secrets.token_hex(16)  # moto takes any; never one in a file or argv anyway
        self.env.update({"TAYDASH_S3_ACCESS_KEY": "demo-access", "TAYDASH_S3_SECRET_KEY": secret,
                         "PATH": f"{self.stack.compose.bin}:{self.env.get('PATH', '')}"})
        from minio import Minio

        Minio(f"127.0.0.1:{port}", access_key="demo-access", secret_key=secret,
              secure=False, region="us-east-1").make_bucket("demo")
        self.store_url = "s3://demo/backups"
        pg = ["docker", "compose", "exec", "-T", "postgres", "psql", "-X", "-q", "-h",
              "localhost", "-p", str(self.stack.pg_port), "-U", "postgres"]
        self.run(*pg, "-c", "CREATE DATABASE demo", cwd=self.base)
        self.run(*pg, "-d", "demo", "-c",
                 "CREATE TABLE readings (id int primary key, sensor text, value float);"
                 "INSERT INTO readings SELECT g, 'sensor-' || (g % 5), random() "
                 "FROM generate_series(1, 1000) g", cwd=self.base)
        vm = sandbox.VmServer(self.stack.vm_url, Path(containers.VM_DATA), None)
        vm.ingest('demo_temperature{sensor="s1"} 21.5\ndemo_temperature{sensor="s2"} 19\n')
        print(f"    compose service postgres: PostgreSQL 18, database demo (1000 rows), port "
              f"{self.stack.pg_port}")
        print(f"    compose service victoriametrics: {self.stack.vm_url}, data in "
              f"{containers.VM_DATA} (inside only)")
        print(f"    S3 store: moto on 127.0.0.1:{port}, bucket demo")
        return [
            f'[snapshots.s3]\nendpoint = "127.0.0.1:{port}"\nregion = "us-east-1"\n',
            f'[snapshots.postgres]\ndatabases = ["demo"]\nhost = "localhost"\n'
            f'port = {self.stack.pg_port}\nuser = "postgres"\n'
            'exec = ["docker", "compose", "exec", "-T", "postgres"]\n',
            f'[snapshots.victoriametrics]\nurl = "{self.stack.vm_url}"\n'
            f'storage_data_path = "{containers.VM_DATA}"\n'
            'exec = ["docker", "compose", "exec", "-T", "victoriametrics"]\n',
        ]

    def close(self) -> None:
        if self.stack:
            self.stack.stop()
        if self.s3:
            with contextlib.suppress(Exception):
                self.s3.stop()
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


def run(directory: Path | None, compose: bool = False) -> int:
    """Run the demo in ``directory`` (default: a new temporary folder); ``compose`` runs the
    services as a docker compose stack (real Docker, or its emulation)."""
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
        banner("throwaway services" + (" as a docker compose stack" if compose else ""))
        extra = d.compose_services() if compose else d.services()
        (d.work / "ops").mkdir()
        (d.work / "ops" / "validate.sh").write_text(VALIDATE)
        (d.work / "ops" / "validate.sh").chmod(0o755)
        (d.work / ".taydash").mkdir()
        keys = d.run(*gnupg.argv("--armor", "--export", fpr), show=False).out
        (d.work / ".taydash" / "keys.asc").write_text(keys)
        (d.work / ".env").write_text("DEMO_SETTING=on\n")
        (d.work / ".gitignore").write_text(".env\n")
        (d.work / ".taydash.toml").write_text(
            '[validate]\ncommands = ["./ops/validate.sh"]\ntimeout = 120\n\n'
            '[push]\nprotected = ["main"]\n\n'
            f'[tags]\nopenpgp_fingerprints = ["{fpr}"]\nformats = ["openpgp"]\n\n'
            f'[snapshots]\non_tag = ["v*"]\nstore = "{d.store_url}"\n\n'
            + "\n".join(extra)
            + '\n[snapshots.config]\npaths = [".env"]\nrecipients = ["demo@example.test"]\n')
        print("    .taydash.toml: validate, protected main, signed v* tags, snapshots -> "
              f"{d.store_url}")
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
        if compose:
            banner("restore db and restore vm through docker compose exec")
            d.taydash("restore", "db", "v0.1.0", "--target-db", "demo_restored")
            d.taydash("restore", "vm", "v0.1.0", "--storage-data-path", "/mnt/vm-restored")
    banner("done; look at:")
    print(f"    work repository   {d.work}")
    print(f"    bare origin       {d.origin}")
    if d.store_url.startswith("s3://"):
        # The S3 server of the emulated stack stopped with it: its URLs lead nowhere now.
        print(f"    backups           {d.store_url} (gone: the demo's S3 server stopped with "
              f"the stack; {len(doc.get('artifacts', []))} artifacts were verified and "
              "restored above)")
        return Exit.OK
    where = d.store_url.removeprefix("file://")
    print(f"    backups           {where}")
    print(f"    manifest          {where}/manifests/v0.1.0.json")
    for art in doc.get("artifacts", []):
        print(f"    artifact          {where}/{art['key']}")
    return Exit.OK
