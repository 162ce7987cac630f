"""The PostgreSQL client's own choices, against the real tools of this host."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing import services

from taydash_hooks.config import PostgresConfig
from taydash_hooks.snapshots.kinds.postgres import client as pg_client
from taydash_hooks.snapshots.kinds.postgres.client import PgClient


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    pg_client._local.cache_clear()
    yield
    pg_client._local.cache_clear()


def test_debian_pg_wrapper_is_passed_over_for_the_binary_it_would_run(
        postgres: services.Postgres, monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    """Debian's psql is a Perl wrapper (~80 ms a call); with -h it runs the newest installed
    version, so taydash runs that binary itself, and it must be the very same one."""
    wrapper = shutil.which("psql", path="/usr/bin")
    assert wrapper and Path(os.path.realpath(wrapper)).name == "pg_wrapper", \
        "these machines have Debian's postgresql-client (make system-deps installs it)"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    resolved = pg_client._local("psql")
    assert resolved != "psql" and Path(resolved).name == "psql"
    assert Path(os.path.realpath(resolved)).name != "pg_wrapper"
    via_wrapper = subprocess.run(["psql", "-h", postgres.host, "--version"], capture_output=True,
                                 text=True, check=True, timeout=30).stdout
    direct = subprocess.run([resolved, "--version"], capture_output=True, text=True, check=True,
                            timeout=30).stdout
    assert via_wrapper == direct
    client = PgClient.of(PostgresConfig(host=postgres.host, port=postgres.port,
                                        user=postgres.user))
    assert client.argv("psql")[0] == resolved
    assert client.psql("SELECT 40 + 2;\n").out.strip() == "42"


def test_other_tools_and_exec_prefixes_are_left_as_named(
        postgres: services.Postgres, monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    monkeypatch.setenv("PATH", f"{postgres.bindir}:/usr/bin:/bin")
    assert pg_client._local("psql") == "psql"  # a real binary first on PATH: run as found
    inside = PgClient("db", 5432, "postgres", ("docker", "compose", "exec", "-T", "postgres"))
    assert inside.argv("psql")[5] == "psql"  # inside a container: its PATH, not ours


def test_the_password_hint_goes_through_the_exec_prefix() -> None:
    """Behind `docker compose exec` the configured socket exists only in the container: the
    hint a restore prints must run there (with a terminal for psql's prompt), and as is
    without a prefix."""
    from taydash_hooks.snapshots.kinds.postgres.server import password_hint

    inside = PostgresConfig(host="/var/run/postgresql", port=5432, user="postgres",
                            exec=("docker", "compose", "exec", "-T", "postgres"))
    assert password_hint(inside, "App") == ("docker compose exec postgres psql -h "
                                            "/var/run/postgresql -p 5432 -U postgres -c "
                                            "'\\password \"App\"'")
    here = PostgresConfig(host="db.internal", port=5433, user="admin")
    assert password_hint(here, "app") == \
        "psql -h db.internal -p 5433 -U admin -c '\\password \"app\"'"
