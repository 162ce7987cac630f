"""Configuration: every documented key, the search order, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from testing.gitrepo import Repos, taydash

from taydash_hooks import config, git
from taydash_hooks.errors import TaydashError

FULL = """
[validate]
commands = ["./ops/validate_p1.sh", "make check"]
timeout = 12.5
isolate = false
cache = false

[push]
protected = ["main", "release/*"]

[tags]
release = ["v*", "rel-*"]
naming = "regex:^v[0-9]+$"
require_annotated = false
require_signed = false
formats = ["ssh"]
openpgp_fingerprints = ["aaaa bbbb cccc dddd eeee  ffff 0000 1111 2222 3333"]
openpgp_keys = "keys/team.asc"
allowed_signers = "keys/allowed"
allow_expired_keys = true
check_at_creation = false

[snapshots]
on_tag = ["v*-milestone-*"]
kinds = ["postgres", "config"]
store = "s3://backups/taydash"
on_push_missing = "block"
mode = "background"

[snapshots.s3]
endpoint = "minio.internal:9000"
secure = true
region = "eu-west-1"
object_lock_days = 30

[snapshots.postgres]
databases = ["taydash", "other"]
host = "db.internal"
port = 6543
user = "backup"
exec = ["docker", "compose", "exec", "-T", "postgres"]
roles = false

[snapshots.victoriametrics]
url = "http://vm.internal:8428"
storage_data_path = "/srv/vm"
vmbackup = "/opt/vm/vmbackup"
vmrestore = "/opt/vm/vmrestore"
exec = ["docker", "compose", "exec", "-T", "victoriametrics"]
s3_endpoint = "http://minio:9000"

[snapshots.config]
paths = [".env", "infra/"]
recipients = ["ops@example.test"]

[health]
max_days_since_release = 14
max_days_since_snapshot = 7.5
max_unpushed_commits = 3
large_blob_mib = 5

[drill]
environment = true
commands = ["./ops/validate_p1.sh"]
pull = true
timeout = 60
"""


def _load(repos: Repos) -> config.Config:
    return config.load(git.find_repo(repos.work))


def test_every_documented_key_round_trips(repos: Repos) -> None:
    repos.write(".taydash.toml", FULL)
    cfg = _load(repos)
    assert cfg.source == repos.work / ".taydash.toml"
    assert cfg.validate == config.ValidateConfig(
        commands=("./ops/validate_p1.sh", "make check"), timeout=12.5, isolate=False, cache=False)
    assert cfg.push == config.PushConfig(protected=("main", "release/*"))
    assert cfg.tags == config.TagsConfig(
        release=("v*", "rel-*"), naming="regex:^v[0-9]+$", require_annotated=False,
        require_signed=False, formats=("ssh",),
        openpgp_fingerprints=("AAAABBBBCCCCDDDDEEEEFFFF0000111122223333",),
        openpgp_keys="keys/team.asc", allowed_signers="keys/allowed",
        allow_expired_keys=True, check_at_creation=False)
    s = cfg.snapshots
    assert s is not None
    assert (s.on_tag, s.kinds, s.store, s.on_push_missing, s.mode) == (
        ("v*-milestone-*",), ("postgres", "config"), "s3://backups/taydash", "block", "background")
    assert s.s3 == config.S3Config("minio.internal:9000", True, "eu-west-1", 30)
    assert s.postgres == config.PostgresConfig(
        ("taydash", "other"), "db.internal", 6543, "backup",
        ("docker", "compose", "exec", "-T", "postgres"), roles=False)
    assert s.victoriametrics == config.VictoriaMetricsConfig(
        "http://vm.internal:8428", "/srv/vm", "/opt/vm/vmbackup", "/opt/vm/vmrestore",
        ("docker", "compose", "exec", "-T", "victoriametrics"), "http://minio:9000")
    assert s.config == config.ConfigBundleConfig((".env", "infra/"), ("ops@example.test",))
    assert cfg.health == config.HealthConfig(14.0, 7.5, 3, 5.0)
    assert cfg.drill == config.DrillConfig(True, ("./ops/validate_p1.sh",), True, 60.0)
    with pytest.raises(AttributeError):
        cfg.validate.timeout = 1  # type: ignore[misc,union-attr]  # frozen


def test_defaults_inside_present_tables_and_absent_features(repos: Repos) -> None:
    repos.write(".taydash.toml", "[validate]\n[tags]\nopenpgp_fingerprints = []\n"
                "[snapshots]\n[snapshots.postgres]\n")
    cfg = _load(repos)
    assert cfg.validate == config.ValidateConfig()
    assert cfg.validate.timeout == 900 and cfg.validate.isolate and cfg.validate.cache
    assert cfg.tags == config.TagsConfig()
    assert cfg.push is None
    assert cfg.snapshots is not None and cfg.snapshots.kinds == ("postgres",)
    assert cfg.snapshots.postgres == config.PostgresConfig()


def test_no_configuration_means_nothing_on(repos: Repos) -> None:
    cfg = _load(repos)
    assert cfg.empty and cfg.source is None


def test_pyproject_table_is_used_when_no_dot_file(repos: Repos) -> None:
    repos.write("pyproject.toml", '[project]\nname = "x"\n[tool.taydash.push]\nprotected = ["dev"]\n')
    cfg = _load(repos)
    assert cfg.push == config.PushConfig(protected=("dev",))
    repos.write(".taydash.toml", '[push]\nprotected = ["main"]\n')
    assert _load(repos).push == config.PushConfig(protected=("main",))


def test_pyproject_without_table_is_no_config(repos: Repos) -> None:
    repos.write("pyproject.toml", '[project]\nname = "x"\n')
    assert _load(repos).empty


def test_env_override_wins(repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repos.write(".taydash.toml", '[push]\nprotected = ["main"]\n')
    other = tmp_path / "elsewhere.toml"
    other.write_text('[push]\nprotected = ["prod"]\n')
    monkeypatch.setenv("TAYDASH_CONFIG", str(other))
    assert _load(repos).push == config.PushConfig(protected=("prod",))
    monkeypatch.setenv("TAYDASH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(TaydashError, match="TAYDASH_CONFIG"):
        _load(repos)


def test_bare_repository_reads_git_dir_file(repos: Repos) -> None:
    (repos.remote / "taydash.toml").write_text('[push]\nprotected = ["main", "prod"]\n')
    cfg = config.load(git.find_repo(repos.remote))
    assert cfg.push == config.PushConfig(protected=("main", "prod"))
    assert cfg.root == repos.remote


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ("[validate]\ncommand = ['x']\n", ["unknown key 'command'", "[validate]"]),
        ("[valdiate]\n", ["unknown table [valdiate]"]),
        ("[snapshots]\n[snapshots.postgres]\nport = 'x'\n", ["[snapshots.postgres] port", "integer"]),
        ("[validate]\ntimeout = '900'\n", ["[validate] timeout", "expected a number"]),
        ("[validate]\ncache = 1\n", ["[validate] cache", "true or false"]),
        ("[validate]\ncommands = './x.sh'\n", ["[validate] commands", "list of strings"]),
        ("[tags]\nnaming = 'regex:(['\n", ["[tags] naming", "regex"]),
        ("[tags]\nnaming = 'semver'\n", ["[tags] naming", "convention"]),
        ("[tags]\nrelease = ['v *']\n", ["[tags] release", "pattern"]),
        ("[tags]\nopenpgp_fingerprints = ['nothex']\n", ["openpgp_fingerprints", "hex"]),
        ("[tags]\nformats = ['x509']\n", ["[tags] formats", "openpgp"]),
        ("[tags]\nformats = ['openpgp']\n", ["openpgp_fingerprints", "require_signed"]),
        ("[snapshots]\nmode = 'later'\n", ["[snapshots] mode", "foreground"]),
        ("[snapshots]\nstore = '/tmp/x'\n", ["[snapshots] store", "file://"]),
        ("[snapshots]\nkinds = ['postgres']\n", ["[snapshots.postgres] is missing"]),
        ("[snapshots]\n[snapshots.config]\npaths = ['.env']\n", ["recipients"]),
        ("[snapshots]\n[snapshots.s3]\nobject_lock_days = -1\n", ["object_lock_days"]),
        ("[snapshots]\n[snapshots.victoriametrics]\ns3_endpoint = 'minio:9000 -x'\n",
         ["s3_endpoint", "host:port"]),
        ("[snapshots]\n[snapshots.victoriametrics]\nexec = 'docker compose exec'\n",
         ["[snapshots.victoriametrics] exec", "list of strings"]),
        ("[snapshots]\n[snapshots.postgres]\nroles = 'yes'\n", ["roles", "true or false"]),
        ("[validate]\ntimeout = 0\n", ["timeout", "greater than 0"]),
        ("[push\n", ["not valid TOML"]),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(repos: Repos, toml: str,
                                                fragments: list[str]) -> None:
    repos.write(".taydash.toml", toml)
    proc = taydash("validate", cwd=repos.work)
    assert proc.returncode == 2, proc.stderr
    assert ".taydash.toml" in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_config_blocks_the_push_hook(repos: Repos) -> None:
    repos.install()
    repos.configure("[validate]\ntimeout = 'soon'\n")
    proc = repos.push("origin", "main")
    assert proc.returncode != 0
    assert "[validate] timeout" in proc.stderr
    assert repos.remote_ref("refs/heads/main") != repos.head()


def test_the_readmes_five_minute_configuration_loads_as_it_says(repos: Repos) -> None:
    """The README's first configuration: a push gate, signed release tags, snapshots of the
    database and VictoriaMetrics into a folder, each on as its table says."""
    from testing import docs

    repos.write(".taydash.toml", docs.block("quick-config", "toml"))
    cfg = _load(repos)
    assert cfg.validate is not None and cfg.validate.commands == ("./ops/validate_p1.sh",)
    assert cfg.tags is not None and cfg.tags.require_signed and cfg.tags.openpgp_fingerprints
    s = cfg.snapshots
    assert s is not None and s.store.startswith("file://") and s.postgres and s.victoriametrics
    assert set(s.kinds) >= {"postgres", "victoriametrics"}
