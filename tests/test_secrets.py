"""No error, log or crash file repeats a secret from the configuration or the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testing.gitrepo import Repos, taydash

from taydash_hooks.redact import redact

SECRET = "s3cr3t-Vx9q"


def test_a_refused_config_value_is_repeated_without_its_password(repos: Repos) -> None:
    url = f"http://user:{SECRET}@vm:8428/api/v1/import/prometheus"
    repos.configure(f'[metrics]\npush_url = "{url}"\n')
    proc = taydash("metrics", cwd=repos.work)
    assert proc.returncode == 2 and "push_url" in proc.stderr
    # The user still sees which value was refused, only the password is masked.
    assert "http://user:***@vm:8428" in proc.stderr
    assert SECRET not in proc.stderr


def test_a_crash_never_writes_a_secret_to_stderr_or_its_log(repos: Repos) -> None:
    # An exception whose text carries the S3 secret and a URL password (as a library's
    # error may): the one line and the traceback log both mask them.
    code = ("import os\nfrom taydash_hooks import entry\n"
            "def work():\n"
            "    raise RuntimeError('denied for ' + os.environ['TAYDASH_S3_SECRET_KEY'] +"
            f" ' at https://ci:{SECRET}x@host/')\n"
            "entry.main(work)")
    env = {**os.environ, "TAYDASH_S3_SECRET_KEY": SECRET}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=repos.work, env=env, check=False, timeout=60)
    assert proc.returncode == 3
    assert "denied for ***" in proc.stderr and SECRET not in proc.stderr
    logs = list((repos.work / ".git" / "taydash" / "logs").glob("crash-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "RuntimeError: denied for ***" in text and SECRET not in text


def test_verbose_log_records_are_redacted(tmp_path: Path) -> None:
    code = ("import logging\nfrom taydash_hooks import output\n"
            "output.setup_logging(2)\n"
            f"logging.getLogger('taydash_hooks.x').debug('argv: curl https://u:{SECRET}@h/')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, check=False, timeout=60)
    assert "argv: curl https://u:***@h/" in proc.stderr and SECRET not in proc.stderr


def test_redact_keeps_what_is_not_a_secret() -> None:
    env = {"PGPASSWORD": SECRET, "AWS_SECRET_ACCESS_KEY": "ab"}  # too short to mask words
    assert redact(f"ssh://git@host/x and {SECRET} and ab", env) == "ssh://git@host/x and *** and ab"
    assert redact("https://tok123@github.com/o/r", env) == "https://***@github.com/o/r"
