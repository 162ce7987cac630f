"""The README's "Restore without taydash" block, run as written against a real backup.

The store must stay readable with standard tools alone (sha256sum, gpg, zstd, psql,
pg_restore, vmrestore): if the layout drifts from what the README says, this fails.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
from testing import keys, services
from testing.gitrepo import ROOT, Repos
from testing.snap import Snap


def _block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- restore-without-taydash -->\n```bash\n(.*?)```", text, re.S)
    assert m, "the README lost its restore-without-taydash block"
    return m.group(1)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_the_readme_recovery_runs_as_written(repos: Repos, postgres: services.Postgres,
                                             vm: services.VictoriaMetrics,
                                             gnupghome: keys.Keyring, tmp_path: Path,
                                             encrypted: bool) -> None:
    store = tmp_path / "store"
    snap = Snap(repos, postgres, vm, f"file://{store}", None, dict(os.environ))
    if encrypted:
        snap.repos.configure(snap.toml.replace(
            'on_tag = ["v*"]', 'on_tag = ["v*"]\nencrypt_to = ["trusted@example.test"]'))
    newdb = f"recovered_{secrets.token_hex(3)}"
    vmdata = tmp_path / "vm-recovered"
    try:
        assert snap.tag("v0.1.0").returncode == 0
        env = {**os.environ, "STORE": str(store), "TAG": "v0.1.0", "NEWDB": newdb,
               "VMDATA": str(vmdata), "PGHOST": postgres.host, "PGPORT": str(postgres.port),
               "PGUSER": postgres.user,
               "PATH": f"{postgres.bindir}:{os.environ['PATH']}"}
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", _block()], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert postgres.psql("SELECT count(*) FROM readings", db=newdb) == "500"
        restored = services.start_vm(vmdata)
        try:
            rows = restored.export(f'snap_metric{{db="{snap.db}"}}')
            assert rows and rows[0]["values"] == [7], rows
        finally:
            services.stop_vm(restored)
    finally:
        postgres.drop_db(newdb)
        postgres.drop_db(snap.db)
