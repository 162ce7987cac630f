"""What both container engines give: the stack, its services, and the one way into them.

A service is reached only as a compose user reaches it, ``docker compose exec -T SERVICE``,
through the ``docker`` first on the stack's PATH (real Docker's client, or the emulation's
stand-in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from taydash_hooks import process

# The VictoriaMetrics data path inside the containers (it does not exist on the host).
VM_DATA = "/mnt/victoria-metrics-data"


def exec_in(docker: Path, service: str, argv: list[str], timeout: float) -> process.Result:
    """``argv`` inside ``service``: ``docker compose exec -T SERVICE argv``."""
    return process.run([str(docker), "compose", "exec", "-T", service, *argv], timeout=timeout)


class Service(Protocol):
    """One running service of either engine."""

    @property
    def pid(self) -> int:
        """The container's main process, as this host sees it."""
        ...

    def run(self, argv: list[str], timeout: float = 60) -> process.Result:
        """``argv`` inside the service (:func:`exec_in`)."""
        ...


class Project(Protocol):
    """An engine's compose project: ``bin`` goes first on PATH (it holds ``docker``)."""

    @property
    def bin(self) -> Path: ...

    @property
    def project(self) -> str:
        """The compose project's name (what `docker compose -p NAME` reaches)."""
        ...

    @property
    def services(self) -> Mapping[str, Service]: ...

    def argv_log(self) -> str:
        """Every argv the stack's ``docker`` was given (no secret may ever be among them)."""
        ...

    def stop(self) -> None:
        """Every service stopped and its data gone (and the engine, when it is ours)."""
        ...


@dataclass
class Stack:
    """The team's compose stack: ``postgres`` and ``victoriametrics``, on ``engine``."""

    compose: Project
    pg_port: int
    vm_url: str
    engine: str  # "docker" or "emulated"
    note: str = ""  # why not real Docker, when it was tried

    def stop(self) -> None:
        self.compose.stop()
