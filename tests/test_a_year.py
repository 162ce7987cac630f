"""A year of operation in a few minutes: the clock faked, everything else real.

Monthly releases snapshotted by `git tag -s`, a weekly prune by the configured retention,
the monthly drill through the README's cron line as written (cron's environment), metrics
pushed into VictoriaMetrics at the simulated times, one key rotation (with resign) in month 6
and the old key revoked in month 9. At the end: every drill of the year passed, every kept
backup verifies and restores, nothing signed by the revoked key is believed, and the
dashboard and the alert rules answer right at sampled days.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from testing import clock, docs, keys, services
from testing.gitrepo import ROOT
from testing.snap import Snap

DAY = 86400
MONTH = 30 * DAY


@pytest.fixture
def year_keys() -> Iterator[keys.Keyring]:
    """Two signing keys made well over a year ago (a clock set back to the start of the
    year must not see them as made in the future): the first with the encryption subkey the
    config bundle is encrypted to."""
    home = Path(tempfile.mkdtemp(prefix="tdy-", dir="/tmp"))  # short: gpg-agent socket path
    home.chmod(0o700)
    ring = keys.Keyring(home)
    made = int(time.time()) - 440 * DAY
    keys.make_key(ring, "trusted", made, encrypt=True)
    keys.make_key(ring, "successor", made)
    try:
        yield ring
    finally:
        keys.close(ring)


def _at(env: dict[str, str], when: float) -> dict[str, str]:
    return clock.at(env, datetime.fromtimestamp(when, timezone.utc))


def _day(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).date().isoformat()


@pytest.mark.parametrize("snap", ["file"], indirect=True)  # a faked clock signs no S3 request
def test_a_year_of_operation(snap: Snap, year_keys: keys.Keyring,
                             history_vm: services.VictoriaMetrics, tmp_path: Path) -> None:
    ring = year_keys
    old, new = ring.keys["trusted"].fingerprint, ring.keys["successor"].fingerprint
    start = time.time() - 420 * DAY  # the simulated year ends a month ago
    start -= start % DAY
    env = {**snap.env, "GNUPGHOME": str(ring.home)}
    snap.repos.git("config", "user.signingkey", old)
    snap.repos.write(".taydash/keys.asc", ring.export("trusted", "successor"))
    push_url = f"{history_vm.url}/api/v1/import/prometheus"
    base = (snap.toml.replace("[snapshots]\n", '[snapshots]\nsigned_manifests = "required"\n', 1)
            + "[snapshots.retention]\nkeep_last = 3\n"
            + f'[metrics]\npush_url = "{push_url}"\nrepo = "year"\n')

    def tags_table(allowed: str, extra: str = "") -> str:
        return f'[tags]\nopenpgp_fingerprints = ["{allowed}"]\n{extra}'

    snap.repos.configure(base + tags_table(old))
    # The README's cron line, as written, under cron's environment.
    cron = docs.block("scheduled-drill-cron", "sh").splitlines()[1].split(None, 5)[5]
    drill_env = tmp_path / "drill.env"
    drill_env.write_text(f"GNUPGHOME={ring.home}\nTAYDASH_PROGRESS_INTERVAL=600\n")
    log = tmp_path / "drill.json"
    cron_here = (cron.replace("/srv/taylordash", str(snap.repos.work))
                 .replace("/opt/taydash/bin/taydash", str(Path(sys.executable).parent / "taydash"))
                 .replace("/etc/taydash/drill.env", str(drill_env))
                 .replace("/var/log/taydash/drill.json", str(log)))
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": env["HOME"], "SHELL": "/bin/sh",
                "LOGNAME": "root"}
    drills: list[tuple[int, dict[str, object]]] = []

    for month in range(1, 13):
        t = start + month * MONTH
        if month == 6:  # the rotation: the new key signs from today, the old one is retired
            snap.repos.git("config", "user.signingkey", new)
            snap.repos.configure(base + tags_table(new, "retired_openpgp_fingerprints = "
                                 f'[{{fingerprint = "{old}", until = "{_day(t)}"}}]\n'))
            resign = snap.cli("backups", "resign", "--all", "--yes", env=_at(env, t))
            assert resign.returncode == 0, resign.stdout + resign.stderr
            assert "-> signed by" in resign.stdout
        if month == 9:  # everything re-signed: the old key goes for good
            snap.repos.configure(base + tags_table(new, f'revoked_openpgp_fingerprints = ["{old}"]\n'))
        tag = f"v1.{month}.0"
        snap.repos.git("commit", "-q", "--allow-empty", "-m", f"month {month}", env=_at(env, t))
        made = snap.repos.git("tag", "-s", "-m", tag, tag, env=_at(env, t), check=False)
        assert made.returncode == 0 and "done" in made.stderr, made.stderr
        assert snap.repos.push("origin", "main", tag, env=_at(env, t)).returncode == 0
        verified = snap.cli("backups", "verify", "--all", env=_at(env, t + DAY))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        for week in (1, 2, 3):  # the weekly prune, by [snapshots.retention]
            pruned = snap.cli("backups", "prune", "--yes", env=_at(env, t + week * 7 * DAY))
            assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        # The monthly drill, on the 1st of the next month, through cron.
        drill = subprocess.run(["sh", "-c", cron_here], env=_at(cron_env, t + 28 * DAY),
                               capture_output=True, text=True, timeout=600)
        doc = json.loads(log.read_text())
        drills.append((month, doc))
        assert drill.returncode == 0 and drill.stdout == "", (month, drill.stdout, doc)

    assert [d["ok"] for _, d in drills] == [True] * 12
    assert all(len(d["tags"]) == min(m, 3) for m, d in drills), drills  # retention kept three
    assert drills[-1][1]["pruned"] == ["v1.9.0", "v1.8.0"]  # within the last five: pruned
    end = start + 13 * MONTH
    verify = snap.cli("backups", "verify", "--all", env=_at(env, end))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.count(f"signed by {new} (allowed)") == 3
    target = f"{snap.db}_year"
    restored = snap.cli("restore", "db", "v1.12.0", "--target-db", target, env=_at(env, end))
    try:
        assert restored.returncode == 0, restored.stderr
        assert snap.pg.psql("SELECT count(*) FROM readings", db=target) == "500"
    finally:
        snap.pg.drop_db(target)
    # The revoked key's holder signs the newest manifest again: believed at no date.
    genuine = snap.raw_get("manifests/v1.12.0.json.sig")
    snap.raw_put("manifests/v1.12.0.json.sig", ring.gpg(
        "--armor", "--detach-sign", "--local-user", old, "--faked-system-time",
        f"{int(start + 2 * DAY)}!", input=snap.raw_get("manifests/v1.12.0.json").decode()).encode())
    forged = snap.cli("backups", "verify", "v1.12.0", env=_at(env, end))
    assert forged.returncode == 1 and "revoked" in forged.stderr, forged.stderr
    snap.raw_put("manifests/v1.12.0.json.sig", genuine)

    # The dashboard, read at sampled days: the drill passed, three backups, none missing.
    history_vm.settle()
    assert history_vm.samples("taydash_last_drill_success")
    dashboard = json.loads((ROOT / "dashboards" / "taydash-backups.json").read_text())
    # Every query but the background snapshot's: this year's snapshots ran in the foreground,
    # and a figure taydash cannot know is left out, never sent as a zero.
    exprs = {f'{p["title"]} {t["refId"]}': t["expr"].replace("$repo", ".*")
             for p in dashboard["panels"] for t in p["targets"] if "background" not in t["expr"]}
    for month in (2, 7, 12):
        when = start + month * MONTH + 29 * DAY  # after that month's drill, before the next
        got = {title: history_vm.query(expr, when) for title, expr in exprs.items()}
        assert all(got.values()), (month, [k for k, v in got.items() if not v])
        assert got["Last drill A"][0][1] == 1, month
        assert got["Last verify A"][0][1] == 1, month
        assert got["Release tags without a backup A"][0][1] == 0, month
        assert got["Backups in the store A"][0][1] == min(month, 3), month
    # The alert rules over the year: the drill ran every month and passed, every tag had a
    # backup, no backup grew older than 30 days: nothing fires.
    replay = subprocess.run(
        ["vmalert", f"-rule={ROOT / 'dashboards' / 'taydash-alerts.yml'}",
         f"-datasource.url={history_vm.url}", f"-remoteWrite.url={history_vm.url}",
         f"-replay.timeFrom={_iso(start + MONTH + DAY)}", f"-replay.timeTo={_iso(end)}",
         "-replay.disableProgressBar", "-replay.rulesDelay=0s", "-httpListenAddr=127.0.0.1:0"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    said = replay.stdout + replay.stderr
    assert replay.returncode == 0, said  # a rule whose query fails ends the replay (fatal)
    for rule in ("TaydashDrillNotRun", "TaydashDrillFailed", "TaydashVerifyFailed",
                 "TaydashBackupTooOld", "TaydashTagsWithoutBackup"):
        assert f'Rule "{rule}"' in said, rule  # every rule was evaluated over the year
    history_vm.settle()  # what the replay wrote is searchable: none of it may be a firing alert
    fired = history_vm.samples('ALERTS{alertstate="firing"}')
    assert fired == [], str(fired)[:2000]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
