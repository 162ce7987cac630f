"""A repository whose release tags snapshot real services, and raw access to its store."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from testing import services
from testing.gitrepo import Repos, taydash


class Snap:
    """A repository whose release tags snapshot a real database, VictoriaMetrics and a config."""

    def __init__(self, repos: Repos, pg: services.Postgres, vm: services.VictoriaMetrics,
                 store_url: str, s3: services.S3Server | None, env: dict[str, str]) -> None:
        self.repos, self.pg, self.vm, self.env = repos, pg, vm, env
        self.db = f"app_{secrets.token_hex(4)}"
        pg.create_db(self.db)
        pg.psql("CREATE TABLE readings (id int primary key, value text);"
                "INSERT INTO readings SELECT g, md5(g::text) FROM generate_series(1, 500) g",
                db=self.db)
        vm.ingest(f'snap_metric{{db="{self.db}"}} 7\n')
        self.store_url = store_url
        s3_table = (f'[snapshots.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n'
                    if s3 else "")
        repos.write(".env", "SECRET_SETTING=1\n")
        repos.write("infra/app.conf", "port = 80\n")
        self.toml = (
            f'[snapshots]\non_tag = ["v*"]\nstore = "{store_url}"\n{s3_table}'
            f'[snapshots.postgres]\ndatabases = ["{self.db}"]\nhost = "{pg.host}"\n'
            f'port = {pg.port}\nuser = "{pg.user}"\n'
            f'[snapshots.victoriametrics]\nurl = "{vm.url}"\nstorage_data_path = "{vm.storage}"\n'
            '[snapshots.config]\npaths = [".env", "infra/"]\nrecipients = ["trusted@example.test"]\n'
        )
        repos.configure(self.toml)
        repos.install()

    def tag(self, name: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.repos.git("tag", "-a", "-m", name, name, env=env or self.env, check=False)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return taydash(*args, cwd=self.repos.work, env=env or self.env)

    def manifest_exists(self, tag: str) -> bool:
        return self.cli("backups", "show", tag, "--json").returncode == 0

    def manifest(self, tag: str) -> dict[str, object]:
        proc = self.cli("backups", "show", tag, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    # --- the store as an attacker (or a careless admin) sees it: raw objects ------------

    @property
    def is_file(self) -> bool:
        return self.store_url.startswith("file://")

    def _s3(self) -> tuple[object, str, str]:
        bucket, _, prefix = self.store_url[len("s3://"):].partition("/")
        endpoint = self.toml.split('endpoint = "')[1].split('"')[0]
        server = services.S3Server(endpoint, self.env["TAYDASH_S3_ACCESS_KEY"],
                                   self.env["TAYDASH_S3_SECRET_KEY"])
        return server.client(), bucket, prefix

    def raw_get(self, key: str) -> bytes:
        if self.is_file:
            return (Path(self.store_url[len("file://"):]) / key).read_bytes()
        client, bucket, prefix = self._s3()
        return client.get_object(bucket, f"{prefix}/{key}").read()  # type: ignore[attr-defined, no-any-return]

    def raw_put(self, key: str, data: bytes) -> None:
        if self.is_file:
            path = Path(self.store_url[len("file://"):]) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.chmod(0o600)
            path.write_bytes(data)
            return
        client, bucket, prefix = self._s3()
        client.put_object(bucket, f"{prefix}/{key}", io.BytesIO(data), len(data))  # type: ignore[attr-defined]

    def raw_delete(self, key: str) -> None:
        if self.is_file:
            (Path(self.store_url[len("file://"):]) / key).unlink()
            return
        client, bucket, prefix = self._s3()
        for version in client.list_objects(bucket, f"{prefix}/{key}", include_version=True):  # type: ignore[attr-defined]
            if version.object_name == f"{prefix}/{key}":  # a prefix match: not key.sig.next
                client.remove_object(bucket, version.object_name, version_id=version.version_id)  # type: ignore[attr-defined]

    def raw_keys(self, prefix: str) -> list[str]:
        if self.is_file:
            root = Path(self.store_url[len("file://"):])
            return sorted(p.relative_to(root).as_posix() for p in (root / prefix).rglob("*")
                          if p.is_file())
        client, bucket, base = self._s3()
        objs = client.list_objects(bucket, f"{base}/{prefix}", recursive=True)  # type: ignore[attr-defined]
        return sorted(o.object_name[len(base) + 1:] for o in objs)

    def artifact(self, tag: str, kind: str) -> dict[str, object]:
        """The first artifact of ``kind``; for postgres a dump, not the roles script."""
        return next(a for a in self.manifest(tag)["artifacts"]  # type: ignore[attr-defined, no-any-return]
                    if a["kind"] == kind and not a.get("roles"))

    def forge(self, tag: str, key: str, data: bytes, **fields: object) -> None:
        """Store ``data`` under ``key`` and rewrite the manifest of ``tag`` to match it (hash,
        size, ``fields``; no sidecar): what someone who can write the store could do."""
        import hashlib

        self.raw_put(key, data)
        doc = json.loads(self.raw_get(f"manifests/{tag}.json"))
        for art in doc["artifacts"]:
            if art["key"] == key:
                art.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data), **fields)
                art.pop("sha256_key", None)
        self.raw_put(f"manifests/{tag}.json", json.dumps(doc).encode())
        sums = f"manifests/{tag}.SHA256SUMS"
        if sums in self.raw_keys("manifests/"):  # the unsigned list is rewritten to match too
            lines = sorted(f"{a['sha256']}  {a['key']}\n" for a in doc["artifacts"]
                           if not a["key"].endswith("/"))
            self.raw_put(sums, "".join(lines).encode())

    def pg_dump(self, *flags: str, database: str | None = None) -> bytes:
        """``pg_dump -Fc FLAGS`` of this repository's database (or ``database``), through a
        pipe as taydash runs it: the archive's bytes."""
        return subprocess.run(["pg_dump", "-Fc", *flags, "-h", self.pg.host, "-p",
                               str(self.pg.port), "-U", self.pg.user, "-d", database or self.db],
                              capture_output=True, timeout=120, check=True).stdout

    def restores_all_rows(self, tag: str, suffix: str) -> None:
        """`restore db TAG` into a new database brings back all 500 rows (dropped after)."""
        target = f"{self.db}_{suffix}"
        proc = self.cli("restore", "db", tag, "--target-db", target)
        try:
            assert proc.returncode == 0, proc.stderr
            assert self.pg.psql("SELECT count(*) FROM readings", db=target) == "500"
        finally:
            self.pg.drop_db(target)


def holding_the_dump(toml: str, folder: Path) -> str:
    """A [snapshots.postgres] exec prefix that holds the first data dump (inside the snapshot,
    past the tag's lock) until ``folder/release`` exists; ``folder/started`` says it is held."""
    hold = (f'case "$*" in *--schema-only*) ;; *" pg_dump "*" -Fc "*) '
            f'if mkdir {folder}/started 2>/dev/null; then '
            f'while [ ! -e {folder}/release ]; do sleep 0.05; done; fi ;; esac; exec "$@"')
    return toml.replace("[snapshots.postgres]\n", "[snapshots.postgres]\nexec = "
                        f'["sh", "-c", {json.dumps(hold)}, "hold"]\n')


def wait_for(what: str, done: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Poll ``done`` until it holds; fail as soon as ``proc`` ended first or after 120 s."""
    deadline = time.monotonic() + 120
    while not done():
        assert proc.poll() is None, f"ended before {what}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.05)
