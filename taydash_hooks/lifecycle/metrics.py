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

from taydash_hooks import git
from taydash_hooks.config import Config, HealthConfig
from taydash_hooks.lifecycle.records import Activity, remember
from taydash_hooks.lifecycle.status import Report, collect
from taydash_hooks.snapshots.fields import timestamp

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


def exposition(families: list[Family], timestamp_ms: int | None = None) -> str:
    """The Prometheus text format (version 0.0.4) of ``families``; every sample stamped with
    ``timestamp_ms`` when given (a push: the sample belongs to when it was collected, not to
    when the server happened to receive it)."""
    lines: list[str] = []
    stamp = f" {timestamp_ms}" if timestamp_ms is not None else ""
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append((f"{fam.name}{{{text}}} {_number(value)}" if text
                          else f"{fam.name} {_number(value)}") + stamp)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Metric:
    """One series name taydash emits, with its help text."""

    name: str
    help: str


LAST_SUCCESS = Metric("taydash_backup_last_success_timestamp_seconds",
                      "When the newest backup holding this kind was taken (UNIX time).")
DURATION = Metric("taydash_backup_duration_seconds",
                  "How long taking this kind took in its newest backup.")
SIZE = Metric("taydash_backup_size_bytes",
              "Stored bytes of this kind (per database) in its newest backup.")
BACKUPS = Metric("taydash_backups", "Backups in the store bound to this repository's tags.")
WITHOUT = Metric("taydash_release_tags_without_backup",
                 "Release tags with no backup (pruned ones not counted).")
PRUNED = Metric("taydash_release_tags_pruned", "Release tags whose backup retention removed.")
PARTIAL = Metric("taydash_partial_backups",
                 "Backups that lack a kind the configuration enables.")
NEWEST = Metric("taydash_newest_backed_up_release_info",
                "The newest release tag that has a backup (one series; the value is always 1).")
LAST_RELEASE = Metric("taydash_last_release_timestamp_seconds",
                      "When the newest release tag was made.")
UNPUSHED = Metric("taydash_unpushed_commits", "Commits on the branch that are not on its remote.")
REPO_SIZE = Metric("taydash_repository_size_bytes", "Size of the repository's object store.")
BACKGROUND_OK = Metric("taydash_last_background_snapshot_success",
                       "1 when the last background (tag-triggered) snapshot succeeded, else 0.")
BACKGROUND_AT = Metric("taydash_last_background_snapshot_timestamp_seconds",
                       "When the last background snapshot finished (UNIX time).")
WARNINGS = Metric("taydash_health_warnings", "What `taydash health` warns about, counted.")
MAX_AGE = Metric("taydash_health_max_days_since_snapshot",
                 "[health] max_days_since_snapshot: the age at which the newest backup is too old "
                 "(the alert rules compare against it).")
COLLECTED = Metric("taydash_metrics_collected_timestamp_seconds",
                   "When these figures were collected.")


@dataclass(frozen=True)
class ActivityMetrics:
    """The four series of one recorded activity (verify, drill)."""

    finished: Metric
    success: Metric
    failed: Metric
    duration: Metric

    @classmethod
    def of(cls, activity: Activity) -> ActivityMetrics:
        a = activity.value
        return cls(Metric(f"taydash_last_{a}_timestamp_seconds",
                          f"When the last {a} finished (UNIX time)."),
                   Metric(f"taydash_last_{a}_success", f"1 when the last {a} passed, else 0."),
                   Metric(f"taydash_last_{a}_failed_backups",
                          f"Backups (tags) the last {a} failed."),
                   Metric(f"taydash_last_{a}_duration_seconds", f"How long the last {a} took."))


ACTIVITIES = {activity: ActivityMetrics.of(activity) for activity in Activity}

METRICS: tuple[Metric, ...] = (
    LAST_SUCCESS, DURATION, SIZE, BACKUPS, WITHOUT, PRUNED, PARTIAL, NEWEST, LAST_RELEASE,
    UNPUSHED, REPO_SIZE,
    *(m for am in ACTIVITIES.values() for m in (am.finished, am.success, am.failed, am.duration)),
    BACKGROUND_OK, BACKGROUND_AT, WARNINGS, MAX_AGE, COLLECTED,
)


def families(report: Report, base: dict[str, str] | None = None,
             health: HealthConfig | None = None) -> list[Family]:
    """The metrics of one :class:`~taydash_hooks.lifecycle.status.Report`, every sample with
    the ``base`` labels (repo, store). A figure that could not be known (no store configured,
    no verify yet) is left out rather than sent as a false zero."""
    out: dict[str, Family] = {}
    base = base or {}

    def one(metric: Metric, value: float | None, **labels: str) -> None:
        if value is None:
            return
        out.setdefault(metric.name, Family(metric.name, metric.help)).samples.append(
            ({**base, **labels}, float(value)))

    b = report.backups
    for kind, k in sorted(b.kinds.items()):
        one(LAST_SUCCESS, k.timestamp, kind=kind)
        one(DURATION, k.duration_seconds, kind=kind)
        # One series per artifact: "postgres app", "postgres roles" (never a second,
        # unlabelled postgres size), "victoriametrics", "config".
        for artifact, database, size in k.parts:
            one(SIZE, size, kind=kind, artifact=artifact,
                **({"database": database} if database else {}))
    if b.in_store is not None:
        one(BACKUPS, b.in_store)
        one(WITHOUT, len(b.tags_without_backup or []))
        one(PRUNED, len(b.pruned_tags or []))
        one(PARTIAL, len(b.partial_backups or []))
    if b.newest_release_with_backup:
        one(NEWEST, 1, tag=b.newest_release_with_backup)
    one(LAST_RELEASE, report.releases.last_timestamp)
    one(UNPUSHED, report.remote.unpushed_commits)
    one(REPO_SIZE, report.repository.size_bytes)
    for activity, res in report.last.items():
        if res:
            am = ACTIVITIES[activity]
            one(am.finished, res.finished)
            one(am.success, 1 if res.ok else 0)
            one(am.failed, res.failed)
            one(am.duration, res.seconds)
    bg = report.background
    if bg:
        one(BACKGROUND_OK, 1 if bg.ok else 0)
        one(BACKGROUND_AT, timestamp(bg.finished))
    one(WARNINGS, len(report.warnings))
    if health is not None:
        one(MAX_AGE, health.max_days_since_snapshot)
    one(COLLECTED, report.time)
    return list(out.values())


def names() -> Iterator[str]:
    """Every metric name :func:`families` can emit (for the dashboard's test)."""
    return (m.name for m in METRICS)


def labels(repo: git.Repo, cfg: Config) -> dict[str, str]:
    """``repo`` and ``store``, on every series: one VictoriaMetrics holds many repositories
    and a repository may back up into two stores, whose figures must not overwrite each
    other. ``repo`` is ``[metrics] repo``, else the name of the origin remote's repository
    (the same from any checkout folder), else the folder's name."""
    name = cfg.metrics.repo if cfg.metrics is not None and cfg.metrics.repo else ""
    if not name:
        url = git.git("remote", "get-url", "origin", cwd=repo.root, check=False).out.strip()
        name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    found = {"repo": name or repo.root.name}
    if cfg.snapshots is not None and cfg.snapshots.store:
        from taydash_hooks.redact import redact

        found["store"] = redact(cfg.snapshots.store)
    return found


def render(repo: git.Repo, cfg: Config, *, stamped: bool = False) -> str:
    """The exposition text of this repository's figures, as of now; ``stamped``: every
    sample carries the collection time (what a push sends)."""
    report = collect(repo, cfg)
    text = families(report, labels(repo, cfg), cfg.health or HealthConfig())
    return exposition(text, int(report.time * 1000) if stamped else None)


MAX_REPLY = 1024 * 1024  # what a push reads back at most: the answer is a status, not data


def push(url: str, text: str, timeout: float = PUSH_TIMEOUT) -> str | None:
    """POST ``text`` to ``url``; None when it was taken, else why not (one sentence). One
    deadline for the whole exchange (a server that drips a byte at a time cannot hold the
    step it follows) and at most :data:`MAX_REPLY` bytes read back."""
    import threading

    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(_post(url, text, timeout)),
                              daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"{url} did not answer within {timeout:g} s"
    return outcome[0]


def _post(url: str, text: str, timeout: float) -> str | None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=text.encode(), method="POST",  # noqa: S310 - http(s) only, checked at load
                                 headers={"Content-Type": "text/plain; version=0.0.4"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            if len(resp.read(MAX_REPLY + 1)) > MAX_REPLY:
                return f"{url} answered with more than {MAX_REPLY} bytes"
        return None
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} could not be reached ({reason})"


def push_after(repo: git.Repo, cfg: Config, step: str) -> None:
    """After ``step`` (snapshot, verify, drill, prune): push the figures when ``[metrics]
    push_url`` is set. Best effort: a failure is a warning, never the step's failure."""
    if cfg.metrics is None or not cfg.metrics.push_url:
        return
    from taydash_hooks.output import warn

    try:
        problem = push(cfg.metrics.push_url, render(repo, cfg, stamped=True), cfg.metrics.timeout)
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
