"""The drill's environment rebuild: the tag's own compose stack, started fresh, restored,
validated and torn down (`taydash drill --environment`, ``[drill] environment = true``).

From the fresh clone at the tag the drill already made: the tag's compose file made private
(:mod:`compose_file`), ``.env`` from the restored config bundle or else ``.env.example`` (as
the team's recovery page does it), started as a project of its own, so it runs beside the
live stack without touching it. The backups go in through the configured exec prefixes, turned
to this project (the same path snapshots take); ``[drill] commands`` run in the clone with
``COMPOSE_PROJECT_NAME`` and ``COMPOSE_FILE`` set, so their ``docker compose exec`` reaches
it. Whatever happens (a failure, Ctrl-C, SIGTERM), the project goes down with its volumes;
a run killed outright (SIGKILL) is swept by the next one (its project names its pid).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taydash_hooks import process
from taydash_hooks.config import Config, DrillConfig, ValidateConfig
from taydash_hooks.errors import TaydashError, usage
from taydash_hooks.lifecycle import compose_file
from taydash_hooks.output import say
from taydash_hooks.snapshots.kinds.place import compose_parts
from taydash_hooks.snapshots.manifest import Manifest
from taydash_hooks.store import Store

PROJECT_PREFIX = "taydash-drill-"
_PROJECT = re.compile(rf"{PROJECT_PREFIX}([0-9]+)-[0-9a-f]+")
FILE_NAME = ".taydash-drill-compose.yml"
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # compose's own rule, no leading "-"


@dataclass
class Rebuild:
    """What the environment step did: each stage's outcome, in order, for the report."""

    project: str
    changes: tuple[str, ...] = ()
    started_s: float | None = None
    restored: list[str] = field(default_factory=list)
    validation: str = ""
    failed_step: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed_step

    def text(self) -> str:
        if self.failed_step:
            return f"{self.failed_step} failed: {self.problem}"
        changed = f"; changed from the tag's file: {', '.join(self.changes)}" if self.changes \
            else ""
        return (f"stack up in {self.started_s:.1f} s (project {self.project}{changed}); "
                f"restored: {'; '.join(self.restored) or 'nothing'}; "
                f"validation: {self.validation}")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "project": self.project, "changes": list(self.changes),
                "started_s": None if self.started_s is None else round(self.started_s, 1),
                "restored": self.restored, "validation": self.validation,
                "failed_step": self.failed_step or None, "problem": self.problem or None}


class _Step(Exception):
    def __init__(self, step: str, problem: str) -> None:
        super().__init__(problem)
        self.step, self.problem = step, problem


def rebuild(cfg: Config, store: Store, doc: Manifest, clone: Path, restored_env: Path | None,
            log_dir: Path) -> Rebuild:
    """Start the tag's stack from ``clone``, restore ``doc`` into it, run ``[drill] commands``
    against it, tear it down. Never raises for the stack's own failures: they are the result
    (``failed_step`` names the step); a configuration that cannot work is exit 2."""
    dcfg = cfg.drill or DrillConfig()
    prefixes = _prefixes(cfg)
    docker = _docker(next(iter(prefixes.values())))
    project = f"{PROJECT_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    result = Rebuild(project)
    _sweep(docker)
    try:
        made = _prepare(clone, restored_env, result)
        base = _compose_base(prefixes, project, clone / FILE_NAME, clone)
        _images(docker, base, made, dcfg)
        with _stack(docker, base, project):
            start = time.monotonic()
            _run_step("start", [*base, "up", "-d", "--no-build"], dcfg.timeout)
            result.started_s = time.monotonic() - start
            say(f"  environment: {project} up in {result.started_s:.1f} s")
            _restore(cfg, store, doc, base, clone, list(prefixes), result)
            result.validation = _validate(dcfg, clone, log_dir, project)
    except _Step as exc:
        result.failed_step, result.problem = exc.step, exc.problem
    return result


def _prefixes(cfg: Config) -> dict[str, tuple[str, ...]]:
    """The configured exec prefix of each kind whose service the stack runs."""
    from taydash_hooks.snapshots import kinds

    found: dict[str, tuple[str, ...]] = {}
    for kind in kinds.registry().values():
        prefix = kind.stack_prefix(cfg) if kind.configured(cfg) else None
        if prefix is None:
            continue
        if compose_parts(prefix) is None:
            raise usage(f"drill --environment restores through [snapshots.{kind.name}] exec, "
                        "which must be a compose prefix (docker compose exec -T SERVICE).")
        found[kind.name] = prefix
    if not found:
        raise usage("drill --environment needs a snapshot kind with a compose exec prefix "
                    "([snapshots.postgres] or [snapshots.victoriametrics] exec) to restore into.")
    return found


def _docker(prefix: tuple[str, ...]) -> str:
    """The docker client the prefixes use (``docker compose``), else ``docker``."""
    return prefix[0] if prefix and Path(prefix[0]).name == "docker" else "docker"


def _compose_base(prefixes: dict[str, tuple[str, ...]], project: str, file: Path,
                  directory: Path) -> list[str]:
    """``docker compose`` (as configured) turned to the throwaway project: its own name, the
    rewritten file, the clone as its folder (the tag's relative paths and .env)."""
    parts = compose_parts(next(iter(prefixes.values())))
    assert parts is not None
    base, _ = parts
    kept: list[str] = []
    skip = False
    for word in base:  # the live project's own -p/-f are not this one's
        if skip:
            skip = False
            continue
        if word in ("-p", "--project-name", "-f", "--file", "--project-directory"):
            skip = True
            continue
        if word.startswith(("--project-name=", "--file=", "--project-directory=")):
            continue
        kept.append(word)
    return [*kept, "-p", project, "-f", str(file), "--project-directory", str(directory)]


def _prepare(clone: Path, restored_env: Path | None, result: Rebuild) -> compose_file.Throwaway:
    try:
        made = compose_file.throwaway(compose_file.find(clone))
    except TaydashError as exc:
        raise _Step("compose file", exc.message) from None
    result.changes = made.changes
    _write_new(clone / FILE_NAME, made.text.encode())
    example = clone / ".env.example"
    if restored_env is not None and restored_env.is_file():
        _write_new(clone / ".env", restored_env.read_bytes())
        result.changes = (*result.changes, ".env from the restored config bundle")
    elif example.is_file() and not example.is_symlink():
        _write_new(clone / ".env", example.read_bytes())
        result.changes = (*result.changes, ".env from .env.example (no config bundle)")
    return made


def _write_new(path: Path, data: bytes) -> None:
    """``data`` as a new 0600 file at ``path`` in the clone: whatever the tag had there (a
    symlink to a file of this host included) is removed first, never written through."""
    if path.is_symlink() or path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _images(docker: str, base: list[str], made: compose_file.Throwaway,
            dcfg: DrillConfig) -> None:
    """Every image the tag's services name is on this host, or (``pull = true``) pulled: only
    the missing ones, since an image made here (``docker build``, ``docker import``) is in no
    registry and a pull of every service would fail on it."""
    # The names come from the tag's compose file: after "--", never read as an option.
    missing = [(service, image) for service, image in made.images.items()
               if process.run([docker, "image", "inspect", "--format", "{{.Id}}", "--", image],
                              timeout=60).returncode != 0]
    if not missing:
        return
    if dcfg.pull:
        odd = next((service for service, _ in missing if not _SERVICE.fullmatch(service)), None)
        if odd is not None:
            raise _Step("pull", f"service {odd!r} is not a name compose pulls by (letters, "
                                "digits, '.', '_' and '-', not first)")
        _run_step("pull", [*base, "pull", "--quiet", *(service for service, _ in missing)],
                  dcfg.timeout)
        return
    service, image = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise _Step("images", f"image {image} of service {service} is not on this host{more}; the "
                          "drill does not pull unless [drill] pull = true")


@contextlib.contextmanager
def _stack(docker: str, base: list[str], project: str) -> Iterator[None]:
    """The project, taken down with its volumes however the block ends; SIGINT, SIGTERM and
    SIGHUP wait until it is down (they are acted on after)."""
    try:
        yield
    finally:
        signals = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            process.run([*base, "down", "-v", "--remove-orphans", "--timeout", "10"],
                        timeout=300)
            _remove_project(docker, project)  # what down cannot see (a half-made project)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def _run_step(step: str, argv: list[str], timeout: float) -> None:
    try:
        res = process.run(argv, timeout=timeout)
    except process.Timeout:
        raise _Step(step, f"`{' '.join(argv[-3:])}` did not finish in {timeout:g} s") from None
    if res.returncode != 0:
        lines = (res.err or res.out).strip().splitlines()
        raise _Step(step, f"docker compose {step} exited {res.returncode}: "
                          f"{lines[-1] if lines else 'no output'}")


def _turn(base: list[str]) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """An exec prefix of the live stack, aimed at the same service of the throwaway project."""
    def turn(prefix: tuple[str, ...]) -> tuple[str, ...]:
        parts = compose_parts(prefix)
        assert parts is not None  # checked by _prefixes
        return (*base, "exec", "-T", parts[1])
    return turn


def _restore(cfg: Config, store: Store, doc: Manifest, base: list[str], clone: Path,
             names: list[str], result: Rebuild) -> None:
    from taydash_hooks.snapshots import kinds
    from taydash_hooks.snapshots.kinds import StackJob
    from taydash_hooks.snapshots.kinds.base import snapshot_timeout

    job = StackJob(cfg, store, doc, _turn(base), clone, snapshot_timeout())
    for name in names:
        try:
            result.restored.extend(kinds.get(name).into_stack(job))
        except TaydashError as exc:
            raise _Step("restore", f"{name}: {exc.message}") from None


def _validate(dcfg: DrillConfig, clone: Path, log_dir: Path, project: str) -> str:
    if not dcfg.commands:
        return "no [drill] commands configured"
    from taydash_hooks.gate.validation import run_commands

    verdict = run_commands(ValidateConfig(commands=dcfg.commands, timeout=dcfg.timeout),
                           clone, log_dir, "drill-environment",
                           env={"COMPOSE_PROJECT_NAME": project,
                                "COMPOSE_FILE": str(clone / FILE_NAME)})
    if not verdict.ok:
        raise _Step("validation", verdict.text())
    return f"pass ({', '.join(dcfg.commands)})"


def _remove_project(docker: str, project: str) -> None:
    """Every container, network and volume docker labels with ``project``."""
    label = f"label=com.docker.compose.project={project}"
    for listing, remove in ((["ps", "-aq"], ["rm", "-f", "-v"]),
                            (["network", "ls", "-q"], ["network", "rm"]),
                            (["volume", "ls", "-q"], ["volume", "rm", "-f"])):
        with contextlib.suppress(Exception):
            ids = process.run([docker, *listing, "--filter", label], timeout=60).out.split()
            if ids:
                process.run([docker, *remove, *ids], timeout=300)


def _sweep(docker: str) -> None:
    """Projects of drills killed outright (their pid is gone), removed before a new one."""
    try:
        res = process.run([docker, "ps", "-a", "--format",
                           '{{.Label "com.docker.compose.project"}}'], timeout=60)
    except (process.Timeout, OSError):
        return
    for project in set(res.out.split()):
        m = _PROJECT.fullmatch(project)
        if m and not process.pid_alive(int(m.group(1))):
            say(f"  environment: removing {project}, left by a drill that was killed")
            _remove_project(docker, project)

