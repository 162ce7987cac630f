"""Operator experience: what a new user sees, from the README alone."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from testing import docs
from testing.gitrepo import ROOT, Repos, run, taydash
from testing.snap import Snap


def _readme_block(marker: str) -> str:
    return docs.between(marker)


def test_the_readme_pre_commit_snippet_works_as_written(repos: Repos) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    repos.write(".pre-commit-config.yaml", _readme_block("pre-commit-local"))
    repos.write("check.sh", "#!/bin/sh\nexit 0\n", 0o755)
    repos.configure('[validate]\ncommands = ["./check.sh"]\n[tags]\nrequire_signed = false\n')
    run(sys.executable, "-m", "pre_commit", "install", "-t", "pre-push", cwd=repos.work, env=env)
    # Outside a push: passes, and says so visibly (no --verbose).
    proc = run(sys.executable, "-m", "pre_commit", "run", "--hook-stage", "pre-push",
               "--all-files", cwd=repos.work, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("nothing to check: not a push") == 2, proc.stdout
    # A real push through pre-commit validates the pushed commit.
    proc = repos.push("origin", "HEAD:refs/heads/feature", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "validated" in proc.stdout + proc.stderr


def test_the_manifest_hooks_are_verbose() -> None:
    from pre_commit.clientlib import load_manifest

    hooks = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert hooks and all(h["verbose"] for h in hooks)


def test_health_strict_and_counts(repos: Repos) -> None:
    repos.configure("[health]\nmax_unpushed_commits = 0\n")
    proc = taydash("health", cwd=repos.work)
    assert proc.returncode == 0
    assert "1 commit on main is not on origin" in proc.stdout, proc.stdout
    proc = taydash("health", "--strict", cwd=repos.work)
    assert proc.returncode == 1
    repos.commit("two")
    proc = taydash("health", "--strict", "--json", cwd=repos.work)
    assert proc.returncode == 1
    assert "2 commits on main are not on origin" in json.loads(proc.stdout)["warnings"]
    repos.push("--no-verify", "origin", "main")
    env = {**os.environ, "TAYDASH_SKIP": "tags,snapshot"}
    for i in range(13):
        repos.git("tag", f"v0.{i}.0", env=env)
    proc = taydash("health", cwd=repos.work)
    assert "13 release tags not on origin" in proc.stdout
    assert "…and 3 more" in proc.stdout


def test_backups_list_sorts_by_version_with_a_header(repos: Repos, tmp_path: Path,
                                                     gnupghome: object) -> None:
    store = tmp_path / "store"
    repos.write("infra.conf", "x\n")
    repos.configure(f'[snapshots]\nstore = "file://{store}"\n[snapshots.config]\n'
                    'paths = ["infra.conf"]\nrecipients = ["trusted@example.test"]\n')
    repos.install()
    for name in ("v0.2.0", "v0.10.0", "v0.9.1", "v0.10.0-rc1"):
        assert repos.git("tag", "-a", "-m", name, name).returncode == 0
    proc = taydash("backups", "list", cwd=repos.work)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["tag", "created", "commit"]
    assert [line.split()[0] for line in lines[1:]] == ["v0.2.0", "v0.9.1", "v0.10.0",
                                                        "v0.10.0-rc1"]
    assert json.loads(taydash("backups", "list", "--json", cwd=repos.work).stdout)
    key = json.loads(taydash("backups", "show", "v0.2.0", "--json",
                             cwd=repos.work).stdout)["artifacts"][0]["key"]
    proc = taydash("objects", "versions", key, cwd=repos.work)
    assert proc.returncode == 0 and "null" not in proc.stdout
    assert "keeps no object versions" in proc.stderr and proc.stdout.startswith("current\t")


def test_restore_db_counts_tables_and_views_apart(snap: Snap) -> None:
    snap.pg.psql("CREATE TABLE other (id int); CREATE VIEW recent AS SELECT * FROM readings",
                 db=snap.db)
    assert snap.tag("v0.1.0").returncode == 0
    target = f"{snap.db}_counted"
    proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "2 tables, 1 view)" in proc.stderr, proc.stderr
    finally:
        snap.pg.drop_db(target)


def test_plain_http_against_a_tls_endpoint_names_the_likely_cause(repos: Repos,
                                                                 tmp_path: Path) -> None:
    bucket = "any-bucket"
    import http.server
    import ssl
    import threading

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-days", "1", "-keyout", str(key), "-out", str(cert))
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        repos.configure(f'[snapshots]\nstore = "s3://{bucket}/x"\n'
                        f'[snapshots.s3]\nendpoint = "127.0.0.1:{server.server_address[1]}"\n'
                        'region = "us-east-1"\n')
        env = {**os.environ, "TAYDASH_S3_ACCESS_KEY": "a", "TAYDASH_S3_SECRET_KEY": "b"}
        proc = taydash("backups", "list", cwd=repos.work, env=env)
        assert proc.returncode == 3
        assert "if it expects TLS, set secure = true" in proc.stderr, proc.stderr
    finally:
        server.shutdown()


def test_restore_db_onto_another_server(snap: Snap) -> None:
    from testing import services

    assert snap.tag("v0.1.0").returncode == 0
    with services.postgres_cluster() as other:
        target = "replacement"
        proc = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--host", other.host,
                        "--port", str(other.port), "--user", other.user)
        assert proc.returncode == 0, proc.stderr
        assert other.psql("SELECT count(*) FROM readings", db=target) == "500"
        assert snap.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
        # The existing-database refusal asks the server restored onto.
        again = snap.cli("restore", "db", "v0.1.0", "--target-db", target, "--host", other.host,
                         "--port", str(other.port))
        assert again.returncode == 1 and "already exists" in again.stderr
