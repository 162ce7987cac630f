"""`taydash metrics [--push]`: backup health in the Prometheus text format."""

from __future__ import annotations

import sys
from pathlib import Path

from taydash_hooks import config as config_mod
from taydash_hooks import git
from taydash_hooks.errors import Exit, environment, usage
from taydash_hooks.lifecycle.metrics import push, render


def run(cwd: Path, to_push: bool) -> int:
    """Print the metrics; with ``to_push`` POST them to ``[metrics] push_url`` instead (exit 3
    when that fails: asked for by hand, a failed push is the command's failure)."""
    repo = git.find_repo(cwd)
    cfg = config_mod.load(repo)
    text = render(repo, cfg, stamped=to_push)
    if not to_push:
        sys.stdout.write(text)
        return Exit.OK
    if cfg.metrics is None or not cfg.metrics.push_url:
        raise usage("--push needs [metrics] push_url in .taydash.toml (e.g. "
                    '"http://victoriametrics:8428/api/v1/import/prometheus").')
    problem = push(cfg.metrics.push_url, text, cfg.metrics.timeout)
    if problem:
        raise environment(f"the metrics were not pushed: {problem}.")
    return Exit.OK
