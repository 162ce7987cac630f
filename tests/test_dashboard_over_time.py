"""A month of pushes, read back weeks later: the dashboard and the alert rules over time.

The clock is faked (libfaketime) for taydash, git and gpg; VictoriaMetrics and vmalert are
the real binaries, reading the samples at the times taydash stamped on them.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from testing import clock, keys, services
from testing.gitrepo import ROOT
from testing.skip import require
from testing.snap import Snap

DAY = 86400
DASHBOARD = ROOT / "dashboards" / "taydash-backups.json"
ALERTS = ROOT / "dashboards" / "taydash-alerts.yml"


def _at(env: dict[str, str], when: float) -> dict[str, str]:
    return clock.at(env, datetime.fromtimestamp(when, timezone.utc))


def _month(snap: Snap, vm: services.VictoriaMetrics, start: float) -> float:
    """Day 0 a backup, day 1 a drill that passes, day 3 a verify that passes, day 7 a drill
    that fails (a dump altered in the store), day 10 a release without a backup, day 14 a last
    push; the last push's time."""
    url = f"{vm.url}/api/v1/import/prometheus"
    # No config bundle: it is encrypted to the suite's OpenPGP key, made today, which gpg under
    # a clock months back refuses as "created in the future".
    toml = snap.toml.split("[snapshots.config]")[0]
    toml = toml.replace("[snapshots]\n", '[snapshots]\nmode = "background"\n', 1)
    snap.repos.configure(toml + f'[metrics]\npush_url = "{url}"\nrepo = "team-app"\n')
    assert snap.tag("v0.1.0", env=_at(snap.env, start)).returncode == 0
    status = snap.repos.work / ".git" / "taydash" / "snapshot-status.json"
    deadline = time.monotonic() + 120
    while not status.exists():  # the background job, detached: its status says it ended
        assert time.monotonic() < deadline, "the background snapshot never finished"
        time.sleep(0.2)
    assert json.loads(status.read_text())["ok"] is True, status.read_text()
    assert snap.repos.push("origin", "main", "v0.1.0", env=snap.env).returncode == 0
    assert snap.cli("drill", "--last", "1", env=_at(snap.env, start + DAY)).returncode == 0
    assert snap.cli("backups", "verify", "--all", env=_at(snap.env, start + 3 * DAY)).returncode == 0
    art = snap.artifact("v0.1.0", "postgres")
    snap.forge("v0.1.0", str(art["key"]), b"PGDMP forged", compressed="")
    assert snap.cli("drill", "--last", "1", env=_at(snap.env, start + 7 * DAY)).returncode == 1
    snap.repos.commit("v0.2.0")
    skip = {**snap.env, "TAYDASH_SKIP": "snapshot"}
    assert snap.tag("v0.2.0", env=_at(skip, start + 10 * DAY)).returncode == 0
    last = start + 14 * DAY
    assert snap.cli("metrics", "--push", env=_at(snap.env, last)).returncode == 0
    vm.settle()
    assert any(abs(t / 1000 - last) < 60 for r in vm.samples("taydash_backups") for t in r["timestamps"])
    return last


@pytest.mark.parametrize("snap", ["file"], indirect=True)  # the faked clock signs no S3 request
def test_every_dashboard_query_answers_weeks_after_the_last_push(
        snap: Snap, history_vm: services.VictoriaMetrics, gnupghome: keys.Keyring) -> None:
    start = time.time() - 60 * DAY
    last = _month(snap, history_vm, start)
    doc = json.loads(DASHBOARD.read_text())
    assert any(v["name"] == "repo" for v in doc["templating"]["list"])
    exprs = {(p["title"], t["refId"]): t["expr"].replace("$repo", ".*")
             for p in doc["panels"] for t in p["targets"]}
    for after in (3600, 10 * DAY, 30 * DAY):
        for (title, ref), expr in exprs.items():
            got = history_vm.query(expr, last + after)
            assert got, f"{title} {ref} is empty {after / DAY:.1f} days after the last push"
            assert all(m.get("repo", "team-app") == "team-app" for m, _ in got), got
    when = last + 30 * DAY
    values = {title: v for (title, ref), expr in exprs.items() if ref == "A"
              for _, v in history_vm.query(expr, when)[:1]}
    assert values["Backups in the store"] == 1
    assert values["Release tags without a backup"] == 1
    assert (values["Last drill"] == 0 and values["Last verify"] == 0) or "Last verify" in values
    assert abs(values["Days since the newest backup"] - 44) < 0.1
    # Every series carries repo and store; the roles script is a size series of its own.
    sizes = history_vm.query("last_over_time(taydash_backup_size_bytes[40d])", when)
    artifacts = {m["artifact"] for m, _ in sizes}
    assert "postgres roles" in artifacts and f"postgres {snap.db}" in artifacts
    assert all(m["repo"] == "team-app" and m["store"] == snap.store_url for m, _ in sizes)


def _firing(vm: services.VictoriaMetrics, name: str) -> list[float]:
    rows = vm.samples(f'ALERTS{{alertname="{name}",alertstate="firing"}}')
    return sorted(t / 1000 for r in rows for t in r["timestamps"])


@pytest.mark.parametrize("snap", ["file"], indirect=True)
def test_each_alert_fires_exactly_when_it_says(
        snap: Snap, history_vm: services.VictoriaMetrics, gnupghome: keys.Keyring,
        tmp_path: Path) -> None:
    vmalert = require("vmalert", "apt-get install victoria-metrics")
    start = time.time() - 100 * DAY
    start -= start % 3600  # rule evaluations fall on the hour
    last = _month(snap, history_vm, start)

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    replay = subprocess.run(
        [vmalert, f"-rule={ALERTS}", f"-datasource.url={history_vm.url}",
         f"-remoteWrite.url={history_vm.url}", f"-replay.timeFrom={iso(start)}",
         f"-replay.timeTo={iso(start + 60 * DAY)}", "-replay.disableProgressBar",
         "-replay.rulesDelay=0s", "-loggerLevel=ERROR", "-httpListenAddr=127.0.0.1:0"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    # The replay flushes its remote write before it exits (rw.Close in vmalert's replay.go):
    # once settled, every alert it wrote is searchable. The first one that must be there is
    # checked before what must not.
    history_vm.settle()
    assert _firing(history_vm, "TaydashDrillFailed"), "vmalert's replay wrote no alert"

    def first(name: str) -> float | None:
        stamps = _firing(history_vm, name)
        return stamps[0] if stamps else None

    hour = 3600
    # The drill failed on day 7: firing from the first evaluation after it.
    failed = first("TaydashDrillFailed")
    assert failed is not None and start + 7 * DAY <= failed <= start + 7 * DAY + 2 * hour
    # No drill for 35 days after the one on day 7.
    late = first("TaydashDrillNotRun")
    assert late is not None and start + 42 * DAY <= late <= start + 42 * DAY + 2 * hour
    # The newest backup (day 0) passes [health] max_days_since_snapshot (30) on day 30.
    old = first("TaydashBackupTooOld")
    assert old is not None and start + 30 * DAY <= old <= start + 30 * DAY + 2 * hour
    # v0.2.0 (day 10) had no backup; taydash said so with the push of day 14.
    missing = first("TaydashTagsWithoutBackup")
    assert missing is not None and last <= missing <= last + 2 * hour
    # The verify of day 3 passed: no verify alert.
    assert first("TaydashVerifyFailed") is None
