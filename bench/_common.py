"""Shared bits of the benchmarks: an isolated git identity, timing, medians."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def sandbox() -> Path:
    """A temp dir with its own HOME and git identity; removed at exit by the caller."""
    base = Path(tempfile.mkdtemp(prefix="taydash-bench-"))
    home = base / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.test\n"
        "[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n"
        "[gc]\n\tauto = 0\n")
    for var in [v for v in os.environ if v.startswith(("GIT_", "TAYDASH_", "PRE_COMMIT"))]:
        del os.environ[var]
    os.environ.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "NO_COLOR": "1"})
    return base


def run(*argv: str | Path, cwd: Path | None = None, input: str | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, input=input, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr}")
    return proc.stdout


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median of ``rounds`` runs of each variant, run side by side (A B C, A B C, ...)."""
    return {k: statistics.median(v) for k, v in rounds_of(variants, rounds).items()}


def rounds_of(variants: dict[str, Callable[[], float]], rounds: int,
              rotate: bool = False) -> dict[str, list[float]]:
    """Every time of ``rounds`` side-by-side rounds (A B C, A B C, ...), in round order;
    ``rotate`` starts each round one variant later (A B C, B C A, ...), so none always runs
    right after the same other one."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for i in range(rounds):
        shift = i % len(names) if rotate else 0
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
    return samples


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median of a/b round by round: each pair ran back to back, so a machine that slows
    down for a while (this one swings by a third) slows both sides of the pairs it hits."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def cleanup(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)
