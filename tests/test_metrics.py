"""`taydash metrics`: backup health as Prometheus series, pushed into a real VictoriaMetrics,
the same figures as `health --json`, and a Grafana dashboard over series taydash emits."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from testing import docs, keys, services
from testing.gitrepo import ROOT, Repos, run, taydash
from testing.snap import Snap

from taydash_hooks.lifecycle import metrics
from taydash_hooks.sandbox import free_port

DASHBOARD = ROOT / "dashboards" / "taydash-backups.json"


def _series(text: str, base: bool = False) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The exposition text parsed back: name -> [(labels, value)]; the repo and store labels
    every sample carries are left out unless ``base``."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)( [0-9]+)?", line)
        assert m, f"not exposition format: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if not base:
            assert "repo" in labels, line
            labels = {k: v for k, v in labels.items() if k not in ("repo", "store")}
        found.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return found


@pytest.fixture
def snap(repos: Repos, postgres: services.Postgres, vm: services.VictoriaMetrics,
         gnupghome: keys.Keyring, tmp_path: Path) -> Snap:
    s = Snap(repos, postgres, vm, f"file://{tmp_path / 'store'}", None, dict(os.environ))
    s.toml += f'[metrics]\npush_url = "{vm.url}/api/v1/import/prometheus?extra_label=repo=t{s.db}"\n'
    s.repos.configure(s.toml)
    return s


def _pushed(vm: services.VictoriaMetrics, name: str, repo: str) -> list[dict[str, object]]:
    return vm.export(f'{name}{{repo="{repo}"}}')


def _becomes(vm: services.VictoriaMetrics, name: str, repo: str, value: float) -> None:
    """The newest pushed sample of ``name`` turns to ``value`` (a fresh sample is searchable
    a moment after its push)."""
    deadline = time.monotonic() + 30
    while (got := _pushed(vm, name, repo)[-1]["values"][-1]) != value:  # type: ignore[index]
        assert time.monotonic() < deadline, f"{name} is {got}, never {value}"
        time.sleep(0.2)


def test_snapshot_verify_and_drill_push_their_metrics_into_victoria_metrics(snap: Snap) -> None:
    repo = f"t{snap.db}"
    assert snap.tag("v0.1.0").returncode == 0  # the tag's hook snapshots, then pushes
    doc = snap.manifest("v0.1.0")
    rows = _pushed(snap.vm, "taydash_backup_last_success_timestamp_seconds", repo)
    kinds = {r["metric"]["kind"]: r["values"][-1] for r in rows}  # type: ignore[index]
    assert set(kinds) == {"postgres", "victoriametrics", "config"}
    from datetime import datetime

    created = datetime.fromisoformat(str(doc["created"])).timestamp()
    assert all(abs(float(v) - created) < 1 for v in kinds.values()), (kinds, created)
    sizes = _pushed(snap.vm, "taydash_backup_size_bytes", repo)
    by_db = {r["metric"].get("database"): r["values"][-1] for r in sizes  # type: ignore[union-attr, index]
             if r["metric"]["kind"] == "postgres"}  # type: ignore[index]
    dump = next(a for a in doc["artifacts"] if a["kind"] == "postgres" and not a.get("roles"))  # type: ignore[union-attr, index]
    assert by_db[snap.db] == dump["size"]

    assert snap.cli("backups", "verify", "--all").returncode == 0
    assert _pushed(snap.vm, "taydash_last_verify_success", repo)[-1]["values"][-1] == 1
    assert snap.repos.push("origin", "main", "v0.1.0").returncode == 0  # a drill clones it
    drill = snap.cli("drill", "--last", "1")
    assert drill.returncode == 0, drill.stdout + drill.stderr
    rows = _pushed(snap.vm, "taydash_last_drill_success", repo)
    assert rows and rows[-1]["values"][-1] == 1
    assert _pushed(snap.vm, "taydash_backups", repo)[-1]["values"][-1] == 1
    text = snap.cli("health").stdout
    assert re.search(r"last verify +passed \(.* UTC, 0 of 1 failed\)", text), text
    assert re.search(r"last drill +passed \(", text), text
    # A drill that fails pushes 0, and health says so.
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP forged", compressed="")
    assert snap.cli("drill", "--last", "1").returncode == 1
    _becomes(snap.vm, "taydash_last_drill_success", repo, 0)
    assert re.search(r"last drill +FAILED \(", snap.cli("health").stdout)


def test_metrics_and_health_json_are_one_collection(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    assert snap.tag("v0.2.0", env={**snap.env, "TAYDASH_SKIP": "snapshot"}).returncode == 0
    health = json.loads(snap.cli("health", "--json").stdout)
    proc = snap.cli("metrics")
    assert proc.returncode == 0, proc.stderr
    got = _series(proc.stdout)
    assert got["taydash_backups"] == [({}, health["backups_in_store"])] == [({}, 1.0)]
    assert got["taydash_release_tags_without_backup"] == [({}, len(health["tags_without_backup"]))]
    assert health["tags_without_backup"] == ["v0.2.0"]
    assert got["taydash_newest_backed_up_release_info"] == [({"tag": "v0.1.0"}, 1.0)]
    for labels, value in got["taydash_backup_last_success_timestamp_seconds"]:
        assert value == health["kinds"][labels["kind"]]["timestamp"]
    assert got["taydash_health_warnings"] == [({}, len(health["warnings"]))]
    # Every sample names its repository and store (two stores never overwrite each other).
    for rows in _series(proc.stdout, base=True).values():
        assert all(labels["repo"] == "remote" and labels["store"] == snap.store_url
                   for labels, _ in rows)
    # Labels stay small: no tag on anything but the one info series.
    assert all("tag" not in labels for name, rows in got.items() if not name.endswith("_info")
               for labels, _ in rows)


def test_a_failed_push_warns_and_never_fails_the_backup(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace(f'push_url = "{snap.vm.url}',
                                           f'push_url = "http://127.0.0.1:{free_port()}'))
    proc = snap.tag("v0.1.0")
    assert proc.returncode == 0
    assert "metrics after the snapshot were not pushed" in proc.stderr
    assert snap.manifest("v0.1.0")["tag"] == "v0.1.0"
    verify = snap.cli("backups", "verify", "v0.1.0")
    assert verify.returncode == 0
    assert "metrics after verify were not pushed" in verify.stderr and "could not be reached" \
        in verify.stderr
    pushed = snap.cli("metrics", "--push")
    assert pushed.returncode == 3 and "the metrics were not pushed" in pushed.stderr


def test_a_background_snapshot_pushes_its_result(snap: Snap) -> None:
    snap.repos.configure(snap.toml.replace('on_tag = ["v*"]', 'on_tag = ["v*"]\nmode = "background"'))
    assert snap.tag("v0.1.0").returncode == 0
    deadline = time.monotonic() + 120
    rows: list[dict[str, object]] = []
    while not rows and time.monotonic() < deadline:
        try:
            rows = _pushed(snap.vm, "taydash_last_background_snapshot_success", f"t{snap.db}")
        except TimeoutError:
            rows = []
    assert rows and rows[-1]["values"][-1] == 1


@pytest.mark.parametrize("url", ["http://user:secret@vm:8428/api/v1/import/prometheus",
                                 "ftp://vm/x", "vm:8428"])
def test_a_push_url_with_credentials_or_not_http_is_refused(snap: Snap, url: str) -> None:
    snap.repos.configure(snap.toml.split("[metrics]")[0] + f'[metrics]\npush_url = "{url}"\n')
    proc = snap.cli("metrics")
    assert proc.returncode == 2 and "push_url" in proc.stderr
    assert "secret" not in proc.stderr  # the refused URL is repeated with its password masked


def test_the_exposition_format_escapes_label_values() -> None:
    text = metrics.exposition([metrics.Family("taydash_x", "x", [({"tag": 'a"b\\c\nd'}, 1.0)])])
    assert 'taydash_x{tag="a\\"b\\\\c\\nd"} 1' in text
    assert text.startswith("# HELP taydash_x x\n# TYPE taydash_x gauge\n")


def test_every_dashboard_query_names_a_series_taydash_emits(snap: Snap) -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    emitted = set(metrics.names())
    # The real output, after a snapshot, a background snapshot, a verify and a drill.
    snap.repos.configure(snap.toml.replace('on_tag = ["v*"]', 'on_tag = ["v*"]\nmode = "background"'))
    assert snap.tag("v0.1.0").returncode == 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not snap.manifest_exists("v0.1.0"):
        time.sleep(0.5)
    snap.cli("backups", "verify", "v0.1.0")
    snap.cli("drill", "--last", "1")
    real = set(_series(snap.cli("metrics").stdout))
    assert real <= emitted
    for expr in exprs:
        named = set(re.findall(r"\btaydash_[a-z_]+", expr))
        assert named, f"{expr!r} names no taydash series"
        assert named <= real, f"{expr!r} names {named - real}, which taydash does not emit"
    # Each panel the issue asks for is there.
    titles = " / ".join(p["title"] for p in doc["panels"]).lower()
    for wanted in ("backup age", "size", "drill", "without a backup"):
        assert wanted in titles
    age = next(p for p in doc["panels"] if p["title"] == "Backup age per kind")
    assert age["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 30 * 86400


def test_the_scheduled_drill_fails_visibly(snap: Snap, tmp_path: Path) -> None:
    """The shipped schedules run as written against a real backup: green when it comes back,
    a failed run (and the failing tag named) when it does not."""
    import subprocess
    import sys

    import yaml

    gh = yaml.safe_load((ROOT / "ci" / "github-drill.yml").read_text())
    assert gh[True]["schedule"][0]["cron"] == "17 6 1 * *"  # YAML reads `on` as true
    step = next(s for s in gh["jobs"]["drill"]["steps"] if "taydash drill" in s.get("run", ""))
    assert "taydash drill --last 5 --json" in step["run"]
    gl = yaml.safe_load((ROOT / "ci" / "gitlab-drill.yml").read_text())
    assert "taydash drill --last 5 --json > drill.json" in gl["taydash-drill"]["script"]
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in gl["taydash-drill"]["rules"]
    unit = docs.block("scheduled-drill-systemd", "ini")
    assert "ExecStart=/opt/taydash/bin/taydash drill --last 5 --json" in unit
    assert "OnCalendar=*-*-01 06:17:00" in unit
    cron = docs.block("scheduled-drill-cron", "sh").splitlines()[1].split(None, 5)[5]

    assert snap.tag("v0.1.0").returncode == 0
    assert snap.repos.push("origin", "main", "v0.1.0").returncode == 0
    secrets = {k: v for k, v in snap.env.items() if k.startswith("TAYDASH_S3_")}
    # drill.env as the README says: the decryption key's home and the store's credentials.
    envfile = tmp_path / "drill.env"
    envfile.write_text("".join(f"{k}={v}\n" for k, v in {
        "GNUPGHOME": snap.env["GNUPGHOME"], "TAYDASH_PROGRESS_INTERVAL": "600", **secrets}.items()))
    envfile.chmod(0o600)
    log = tmp_path / "drill.json"
    # cron's own environment: its PATH, the user's HOME, nothing of this shell.
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": snap.env["HOME"], "SHELL": "/bin/sh",
                "LOGNAME": "root"}
    cron_here = (cron.replace("/srv/taylordash", str(snap.repos.work))
                 .replace("/opt/taydash/bin/taydash", str(Path(sys.executable).parent / "taydash"))
                 .replace("/etc/taydash/drill.env", str(envfile))
                 .replace("/var/log/taydash/drill.json", str(log)))
    # The CI runner: its own checkout, in a folder named as runners name them, a keyring of
    # its own that gets the decryption key from the secret, as the workflow's steps say.
    checkout = tmp_path / "builds" / "runner-7" / "0" / "team" / "app"
    run("git", "clone", "--quiet", str(snap.repos.remote), str(checkout))
    runner_home = Path(tempfile.mkdtemp(prefix="tdci-", dir="/tmp"))
    runner_home.chmod(0o700)
    key = keys.Keyring(Path(snap.env["GNUPGHOME"])).gpg(
        "--armor", "--export-secret-keys", "trusted@example.test")
    ci_env = {**snap.env, **secrets, "GNUPGHOME": str(runner_home),
              "TAYDASH_GPG_PRIVATE_KEY": key,
              "PATH": f"{Path(sys.executable).parent}:{snap.env['PATH']}"}
    steps = [s for s in gh["jobs"]["drill"]["steps"] if "run" in s and "pip install" not in s["run"]]

    def github() -> subprocess.CompletedProcess[str]:
        for s in steps:
            proc = subprocess.run(["bash", "-e", "-c", s["run"]], cwd=checkout, env=ci_env,
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                break
        return proc

    try:
        ok = github()
        doc = json.loads((checkout / "drill.json").read_text())
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert doc["ok"], doc  # a backup that comes back (the bundle decrypted): a green run
        quiet = subprocess.run(["sh", "-c", cron_here], env=cron_env, capture_output=True,
                               text=True, timeout=600)
        assert quiet.returncode == 0 and quiet.stdout == "", quiet.stdout + quiet.stderr
        assert json.loads(log.read_text())["ok"] is True  # one JSON document per run

        # The dump flipped in the store: the drill fails, the run fails and names the tag.
        dump = next(a for a in snap.manifest("v0.1.0")["artifacts"]  # type: ignore[union-attr]
                    if a["kind"] == "postgres" and not a.get("roles"))
        raw = bytearray(snap.raw_get(dump["key"]))
        raw[len(raw) // 2] ^= 0xFF
        snap.raw_put(dump["key"], bytes(raw))
        bad = github()
        assert bad.returncode == 1
        assert "::error title=taydash drill FAILED::v0.1.0" in bad.stdout + bad.stderr
        loud = subprocess.run(["sh", "-c", cron_here], env=cron_env, capture_output=True,
                              text=True, timeout=600)
        assert "taydash drill FAILED" in loud.stdout  # what cron mails
        assert json.loads(log.read_text())["ok"] is False
    finally:
        keys.close(keys.Keyring(runner_home))


def test_a_forged_creation_time_is_no_crash_of_health_or_metrics(snap: Snap) -> None:
    """`created` is store content: someone who can write the bucket may put anything there."""
    snap.repos.configure(snap.toml.split("[metrics]")[0])  # no push: the figures are read here
    assert snap.tag("v0.1.0").returncode == 0
    doc = json.loads(snap.raw_get("manifests/v0.1.0.json"))
    doc["created"] = "9999-when-ever"
    snap.raw_put("manifests/v0.1.0.json", json.dumps(doc).encode())
    health = snap.cli("health", "--json")
    assert health.returncode == 0, health.stderr
    report = json.loads(health.stdout)
    assert report["days_since_snapshot"] is None
    assert any("9999-when-ever" in w for w in report["warnings"]), report["warnings"]
    proc = snap.cli("metrics")
    assert proc.returncode == 0, proc.stderr
    got = _series(proc.stdout)
    assert "taydash_backup_last_success_timestamp_seconds" not in got  # unknown, not a false 0
    assert got["taydash_backups"] == [({}, 1.0)]


HEALTH_KEYS = {
    "warnings", "last_release_tag", "days_since_release", "head_tagged", "unpushed_commits",
    "tags_not_on_remote", "time", "last_release_timestamp", "days_since_snapshot",
    "tags_without_backup", "partial_backups", "pruned_tags", "backups_in_store",
    "newest_release_with_backup", "kinds", "repo_size_bytes", "large_blobs",
    "last_background_snapshot", "last_verify", "last_drill"}


def test_health_strict_fails_after_a_failed_drill_and_the_warning_is_counted(snap: Snap) -> None:
    assert snap.tag("v0.1.0").returncode == 0
    assert snap.repos.push("origin", "main", "v0.1.0").returncode == 0
    assert snap.cli("drill", "--last", "1").returncode == 0
    doc = json.loads(snap.cli("health", "--json").stdout)
    assert set(doc) == HEALTH_KEYS  # the --json contract, unchanged by the typed report
    assert set(doc["kinds"]["postgres"]) == {"tag", "timestamp", "size_bytes",
                                             "sizes_by_database", "duration_seconds"}
    before = len(doc["warnings"])
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP forged", compressed="")
    assert snap.cli("drill", "--last", "1").returncode == 1
    strict = snap.cli("health", "--strict")
    assert strict.returncode == 1, strict.stdout
    assert "WARNING: the last drill FAILED (" in strict.stdout and "1 of 1 failed" in strict.stdout
    doc = json.loads(snap.cli("health", "--json").stdout)
    assert len(doc["warnings"]) == before + 1
    got = _series(snap.cli("metrics").stdout)
    assert got["taydash_health_warnings"] == [({}, float(before + 1))]


class _Hostile:
    """An HTTP endpoint on loopback that answers a push the way a hostile or broken one does:
    ``drip`` (a byte of headers every 0.5 s, for a minute) or ``flood`` (an endless body)."""

    def __init__(self, how: str) -> None:
        import socket
        import threading

        self.how, self.sent, self.cut = how, 0, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/v1/import/prometheus"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(65536)
        try:
            if self.how == "drip":
                for byte in b"HTTP/1.1 200 OK\r\n" * 10:
                    conn.sendall(bytes([byte]))
                    self.sent += 1
                    time.sleep(0.5)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                chunk = b"x" * 65536
                while self.sent < 512 * 1024 * 1024:
                    conn.sendall(chunk)
                    self.sent += len(chunk)
        except OSError:
            self.cut.set()  # the client went away
        finally:
            conn.close()


@pytest.mark.parametrize("how", ["drip", "flood"])
def test_a_push_endpoint_that_drips_or_floods_is_given_up(repos: Repos, how: str) -> None:
    """One deadline for the whole push (not per read) and a cap on the answer read back."""
    server = _Hostile(how)
    repos.configure(f'[metrics]\npush_url = "{server.url}"\ntimeout = 2\n')
    proc = taydash("metrics", "--push", cwd=repos.work, timeout=120)
    assert proc.returncode == 3, proc.stderr
    if how == "drip":
        assert "did not answer within 2 s" in proc.stderr, proc.stderr
        assert server.sent < 170  # it was still dripping when the push gave up
    else:
        assert "answered with more than 1048576 bytes" in proc.stderr, proc.stderr
        assert server.cut.wait(30) and server.sent < 512 * 1024 * 1024  # not read to its end


def test_a_push_url_that_is_no_address_is_refused_at_load(repos: Repos) -> None:
    repos.configure('[metrics]\npush_url = "http://[::1:9/x"\n')
    proc = taydash("metrics", cwd=repos.work)
    assert proc.returncode == 2 and "push_url" in proc.stderr and "Traceback" not in proc.stderr
