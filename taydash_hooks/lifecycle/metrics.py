"""Backup health as Prometheus metrics: `taydash metrics`, and a push after each deliberate step.

The figures are those of :func:`taydash_hooks.lifecycle.status.collect` (the same
collection as `health --json`), written in the Prometheus text exposition format. Names
start with ``taydash_`` and carry their unit; labels stay few: ``kind`` and ``database``,
never a tag on a count. With ``[metrics] push_url`` (VictoriaMetrics'
``/api/v1/import/prometheus``, or a Pushgateway's ``/metrics/job/<job>``) the same text is
POSTed after every snapshot, verify, drill and prune; a failed push warns and never fails
the step it follows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from taydash_hooks import git
from taydash_hooks.config import Config
from taydash_hooks.lifecycle.records import Activity, remember
from taydash_hooks.lifecycle.status import collect, timestamp

PUSH_TIMEOUT = 10.0


@dataclass(frozen=True)
class Family:
    """One metric: its name, help text, type and samples (labels, value)."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    type: str = "gauge"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


def exposition(families: list[Family]) -> str:
    """The Prometheus text format (version 0.0.4) of ``families``."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{text}}} {_number(value)}" if text
                         else f"{fam.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def families(doc: dict[str, Any]) -> list[Family]:
    """The metrics of one ``status.collect`` document. A figure that could not be known
    (no store configured, no verify yet) is left out rather than sent as a false zero."""
    out: list[Family] = []

    def one(name: str, help_: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        fam = next((f for f in out if f.name == name), None)
        if fam is None:
            fam = Family(name, help_)
            out.append(fam)
        fam.samples.append((labels, float(value)))

    for kind, k in sorted((doc.get("kinds") or {}).items()):
        one("taydash_backup_last_success_timestamp_seconds",
            "When the newest backup holding this kind was taken (UNIX time).", k["timestamp"],
            kind=kind)
        one("taydash_backup_duration_seconds",
            "How long taking this kind took in its newest backup.", k["duration_seconds"],
            kind=kind)
        for database, size in sorted(k["sizes_by_database"].items()):
            labels = {"kind": kind, **({"database": database} if database else {})}
            one("taydash_backup_size_bytes",
                "Stored bytes of this kind (per database) in its newest backup.", size, **labels)
    if doc.get("backups_in_store") is not None:
        one("taydash_backups", "Backups in the store bound to this repository's tags.",
            doc["backups_in_store"])
        one("taydash_release_tags_without_backup", "Release tags with no backup (pruned ones "
            "not counted).", len(doc.get("tags_without_backup") or []))
        one("taydash_release_tags_pruned", "Release tags whose backup retention removed.",
            len(doc.get("pruned_tags") or []))
        one("taydash_partial_backups", "Backups that lack a kind the configuration enables.",
            len(doc.get("partial_backups") or []))
    newest = doc.get("newest_release_with_backup")
    if newest:
        one("taydash_newest_backed_up_release_info",
            "The newest release tag that has a backup (one series; the value is always 1).", 1,
            tag=newest)
    one("taydash_last_release_timestamp_seconds", "When the newest release tag was made.",
        doc.get("last_release_timestamp"))
    one("taydash_unpushed_commits", "Commits on the branch that are not on its remote.",
        doc.get("unpushed_commits"))
    one("taydash_repository_size_bytes", "Size of the repository's object store.",
        doc.get("repo_size_bytes"))
    for activity in (a.value for a in Activity):
        res = doc.get(f"last_{activity}")
        if res:
            one(f"taydash_last_{activity}_timestamp_seconds",
                f"When the last {activity} finished (UNIX time).", res["finished"])
            one(f"taydash_last_{activity}_success",
                f"1 when the last {activity} passed, else 0.", 1 if res["ok"] else 0)
            one(f"taydash_last_{activity}_failed_backups",
                f"Backups (tags) the last {activity} failed.", res["failed"])
            one(f"taydash_last_{activity}_duration_seconds",
                f"How long the last {activity} took.", res["seconds"])
    bg = doc.get("last_background_snapshot")
    if bg:
        one("taydash_last_background_snapshot_success",
            "1 when the last background (tag-triggered) snapshot succeeded, else 0.",
            1 if bg.get("ok") else 0)
        one("taydash_last_background_snapshot_timestamp_seconds",
            "When the last background snapshot finished (UNIX time).", timestamp(bg.get("finished")))
    one("taydash_health_warnings", "What `taydash health` warns about, counted.",
        len(doc.get("warnings") or []))
    one("taydash_metrics_collected_timestamp_seconds", "When these figures were collected.",
        doc.get("time"))
    return out


def names() -> Iterator[str]:
    """Every metric name :func:`families` can emit (for the dashboard's test)."""
    full = {"kinds": {"k": {"timestamp": 1.0, "duration_seconds": 1.0,
                            "sizes_by_database": {"db": 1}}},
            "backups_in_store": 1, "newest_release_with_backup": "v1",
            "last_release_timestamp": 1.0, "unpushed_commits": 0, "repo_size_bytes": 1,
            "last_verify": {"finished": 1.0, "ok": True, "failed": 0, "seconds": 1.0},
            "last_drill": {"finished": 1.0, "ok": True, "failed": 0, "seconds": 1.0},
            "last_background_snapshot": {"ok": True, "finished": "2026-01-01T00:00:00Z"},
            "warnings": [], "time": 1.0}
    return (f.name for f in families(full))


def render(repo: git.Repo, cfg: Config) -> str:
    """The exposition text of this repository's figures, as of now."""
    return exposition(families(collect(repo, cfg)))


def push(url: str, text: str, timeout: float = PUSH_TIMEOUT) -> str | None:
    """POST ``text`` to ``url``; None when it was taken, else why not (one sentence)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=text.encode(), method="POST",  # noqa: S310 - http(s) only, checked at load
                                 headers={"Content-Type": "text/plain; version=0.0.4"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read()
        return None
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} could not be reached ({reason})"


def push_after(repo: git.Repo, cfg: Config, step: str) -> None:
    """After ``step`` (snapshot, verify, drill, prune): push the figures when ``[metrics]
    push_url`` is set. Best effort: a failure is a warning, never the step's failure."""
    if cfg.metrics is None or not cfg.metrics.push_url:
        return
    from taydash_hooks.output import warn

    try:
        problem = push(cfg.metrics.push_url, render(repo, cfg), cfg.metrics.timeout)
    except Exception as exc:  # a metrics push must never turn a good backup into a failure
        problem = f"collecting them failed ({exc})"
    if problem:
        warn(f"metrics after {step} were not pushed: {problem}.")


# How a push warning names the step each recorded activity is.
_STEP = {Activity.VERIFY: "verify", Activity.DRILL: "the drill"}


def record_and_push(repo: git.Repo, cfg: Config, activity: Activity, ok: bool, checked: int,
                    failed: int, seconds: float) -> None:
    """The outcome of a verify or drill, kept for `health` and `metrics`, then pushed (when
    ``[metrics] push_url`` is set): every recorded outcome reaches the push."""
    remember(repo, activity, ok, checked, failed, seconds)
    push_after(repo, cfg, _STEP[activity])
