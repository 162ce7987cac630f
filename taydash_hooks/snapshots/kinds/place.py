"""Where a service's files are: on this host, or inside a container behind an exec prefix.

VictoriaMetrics' ``storage_data_path``, a restore target and a drill's scratch
directory are paths as the service sees them. On the host they are read
directly. Behind ``exec`` (``docker compose exec -T victoriametrics``) every
read and write is a small POSIX sh script run inside, the paths passed as
arguments and never spliced into the script; it needs only what busybox
offers (sh, find, stat, sha256sum, mktemp), which VictoriaMetrics' images have.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from taydash_hooks import process
from taydash_hooks.errors import TaydashError, environment
from taydash_hooks.results import Check
from taydash_hooks.snapshots.stored import empty_dir
from taydash_hooks.store.base import CHUNK


@dataclass(frozen=True)
class FileHash:
    """One file of a VictoriaMetrics snapshot, as it was where VictoriaMetrics runs."""

    sha256: str
    size: int


class Place(Protocol):
    """Files and commands where a service runs."""

    label: str  # "" on the host; " inside <prefix>" otherwise, for messages
    prefix_len: int  # how many words command() puts first (process.run's inside_prefix)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as run there."""
        ...

    def found(self, binary: str) -> bool:
        """Whether ``binary`` can be run there."""
        ...

    def hash_tree(self, path: str, timeout: float) -> dict[str, FileHash] | None:
        """SHA-256 and size of every file under ``path`` (following symlinks, as a snapshot's
        are); None when ``path`` is no directory."""
        ...

    def is_empty(self, path: str) -> bool:
        """True when ``path`` does not exist or is an empty directory."""
        ...

    def make_dir(self, path: str) -> None:
        ...

    def clear_dir(self, path: str) -> None:
        """Remove everything inside ``path`` (a restore target that failed its check)."""
        ...

    def scratch(self) -> contextlib.AbstractContextManager[str]:
        """A new empty directory there, removed afterwards."""
        ...


def hash_tree(root: Path) -> dict[str, FileHash]:
    """SHA-256 and size of every file under ``root`` on this host (following symlinks)."""
    files: dict[str, FileHash] = {}
    for dirpath, _, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            sha = hashlib.sha256()
            size = 0
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    sha.update(chunk)
                    size += len(chunk)
            files[rel] = FileHash(sha.hexdigest(), size)
    return files


class Host:
    """This machine: plain Python on plain paths."""

    label = ""
    prefix_len = 0  # for process.run(inside_prefix=...): nothing to stop elsewhere

    def command(self, argv: list[str]) -> list[str]:
        return argv

    def found(self, binary: str) -> bool:
        return shutil.which(binary) is not None

    def hash_tree(self, path: str, timeout: float) -> dict[str, FileHash] | None:
        return hash_tree(Path(path)) if Path(path).is_dir() else None

    def is_empty(self, path: str) -> bool:
        p = Path(path)
        return not p.exists() or (p.is_dir() and not any(p.iterdir()))

    def make_dir(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def clear_dir(self, path: str) -> None:
        empty_dir(Path(path))

    @contextlib.contextmanager
    def scratch(self) -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="taydash-scratch-") as tmp:
            yield tmp


# Sizes, a separator, then hashes: two finds because busybox's find has no -printf.
_HASH = """cd -- "$1" 2>/dev/null || exit 3
for tool in find stat sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not available" >&2; exit 4; }
done
find -L . -type f -exec stat -L -c '%s %n' {} + || exit 5
echo //
find -L . -type f -exec sha256sum {} + || exit 5
"""
_IS_EMPTY = '[ ! -e "$1" ] || { [ -d "$1" ] && [ -z "$(ls -A -- "$1")" ]; }'


class Inside:
    """A container (or any other place) reached by prefixing every command with ``prefix``."""

    def __init__(self, prefix: tuple[str, ...]) -> None:
        self.prefix = prefix
        self.prefix_len = len(prefix)  # a command killed here is stopped inside too
        self.label = f" inside `{' '.join(prefix)}`"

    def command(self, argv: list[str]) -> list[str]:
        return [*self.prefix, *argv]

    def _sh(self, script: str, *args: str, timeout: float = 120) -> process.Result:
        try:
            return process.run(self.command(["sh", "-c", script, "sh", *args]), timeout=timeout,
                               inside_prefix=self.prefix_len)
        except process.Timeout as exc:
            raise environment(f"{exc}{self.label}") from None
        except FileNotFoundError:
            raise environment(f"{self.prefix[0]} (an exec prefix) was not found.") from None

    def _must(self, what: str, script: str, *args: str) -> None:
        res = self._sh(script, *args)
        if res.returncode != 0:
            raise environment(f"cannot {what}{self.label}: "
                              f"{(res.err.strip() or f'exit {res.returncode}')[-300:]}")

    def found(self, binary: str) -> bool:
        return self._sh('command -v -- "$1" >/dev/null', binary, timeout=60).returncode == 0

    def hash_tree(self, path: str, timeout: float) -> dict[str, FileHash] | None:
        res = self._sh(_HASH, path, timeout=timeout)
        if res.returncode == 3:
            return None
        if res.returncode != 0:
            raise environment(f"cannot hash the files of {path}{self.label}: "
                              f"{(res.err.strip() or f'exit {res.returncode}')[-300:]}")
        sizes_text, sep, hashes_text = res.out.partition("//\n")
        sizes: dict[str, int] = {}
        hashes: dict[str, str] = {}
        try:
            for line in sizes_text.splitlines():
                size, rel = line.split(" ", 1)
                sizes[_rel(rel)] = int(size)
            for line in hashes_text.splitlines():
                digest, rel = line.split("  ", 1)
                if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
                    raise ValueError(digest)
                hashes[_rel(rel)] = digest
        except ValueError:
            raise environment(f"cannot read the file list of {path}{self.label}: a file name "
                              "that sha256sum escapes, or output that is no listing.") from None
        if not sep or sizes.keys() != hashes.keys():
            raise environment(f"the files of {path}{self.label} changed while they were hashed.")
        return {rel: FileHash(hashes[rel], size) for rel, size in sizes.items()}

    def is_empty(self, path: str) -> bool:
        return self._sh(_IS_EMPTY, path).returncode == 0

    def make_dir(self, path: str) -> None:
        self._must(f"create {path}", 'mkdir -p -- "$1"', path)

    def clear_dir(self, path: str) -> None:
        self._must(f"empty {path}", 'find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +', path)

    @contextlib.contextmanager
    def scratch(self) -> Iterator[str]:
        res = self._sh("mktemp -d")
        made = res.out.strip()
        if res.returncode != 0 or not made.startswith("/") or "\n" in made:
            raise environment(f"cannot make a scratch directory{self.label}: {res.err.strip()}")
        try:
            yield made
        finally:
            with contextlib.suppress(Exception):
                self._sh('rm -rf -- "$1"', made)


def _rel(listed: str) -> str:
    """``./a/b`` as find prints it -> ``a/b``; anything else is no listing."""
    if not listed.startswith("./") or listed.startswith("\\"):
        raise ValueError(listed)
    return listed[2:]


def place(prefix: tuple[str, ...]) -> Place:
    """The host for an empty prefix, otherwise the container the prefix reaches."""
    return Inside(prefix) if prefix else Host()


@functools.lru_cache(maxsize=16)
def unreachable(prefix: tuple[str, ...]) -> str | None:
    """Why the exec ``prefix`` reaches no container (``true`` cannot run through it), or None
    when it does. Asked after a command behind it failed, so that "no container" is said as
    what it is, never as a missing tool or an unreadable archive."""
    try:
        res = process.run([*prefix, "true"], timeout=60, inside_prefix=len(prefix))
    except process.Timeout:
        return "it did not answer within 60 s"
    except FileNotFoundError:
        return f"{prefix[0]} was not found"
    if res.returncode == 0:
        return None
    return (res.err.strip().splitlines() or [f"exit {res.returncode}"])[-1][:300]


def compose_flavour(prefix: tuple[str, ...]) -> str | None:
    """When ``prefix`` names the compose this host does not have: which one it has, and the
    prefix to write instead (Debian's docker.io with docker-compose 1.29 has no `docker
    compose`; a newer Docker may have only the plugin). None when the named one is there."""
    import shutil

    if prefix[:2] == ("docker", "compose"):
        try:
            plugin = process.run(["docker", "compose", "version"], timeout=30).returncode == 0
        except (process.Timeout, FileNotFoundError):
            plugin = False
        if not plugin and shutil.which("docker-compose"):
            rest = ", ".join(f'"{w}"' for w in prefix[2:])
            return ("this host has docker-compose, not the `docker compose` plugin: write the "
                    f'prefix as ["docker-compose", {rest}]')
    if prefix[:1] == ("docker-compose",) and not shutil.which("docker-compose"):
        rest = ", ".join(f'"{w}"' for w in prefix[1:])
        return ('docker-compose is not installed here: write the prefix as '
                f'["docker", "compose", {rest}]')
    return None


def no_container(prefix: tuple[str, ...], reason: str) -> str:
    """The sentence for a prefix that reaches no container, with the fixes that work."""
    flavour = compose_flavour(prefix)
    if flavour:
        return f"no container is reachable through `{' '.join(prefix)}` ({reason}): {flavour}."
    return (f"no container is reachable through `{' '.join(prefix)}` ({reason}): start the "
            "stack, and run taydash from the compose project's folder or name the project "
            "in the prefix (docker compose -p NAME exec -T SERVICE).")


def tool_check(name: str, package: str, needed: bool = True,
               prefix: tuple[str, ...] = ()) -> Check:
    """``name`` on PATH, or inside the container ``prefix`` reaches when it is set (doctor)."""
    import shutil

    if prefix and needed:
        reason = unreachable(prefix)
        if reason is not None:
            return Check(name, False, no_container(prefix, reason),
                         "docker compose ps (is the service up, in this project?)")
        inside = Inside(prefix)
        try:
            ok = inside.found(name)
        except TaydashError as exc:
            return Check(name, False, exc.message, f"check the exec prefix {' '.join(prefix)}")
        return Check(name, ok, f"found{inside.label}" if ok else f"not found{inside.label}",
                     f"use an image that has {name} ({package})")
    path = shutil.which(name)
    if path:
        return Check(name, True, path)
    if not needed:
        return Check(name, True, "not found (not needed by this configuration)")
    return Check(name, False, "not found on PATH", f"apt-get install {package}")


def compose_parts(prefix: tuple[str, ...]) -> tuple[list[str], str] | None:
    """The compose command and the service of an exec prefix (``docker compose [-p NAME]
    exec [-T] SERVICE``, or ``docker-compose ...``); None for any other prefix."""
    if "exec" not in prefix:
        return None
    base = list(prefix[:prefix.index("exec")])
    if not (base[:1] == ["docker-compose"] or base[:2] == ["docker", "compose"]):
        return None
    return base, prefix[-1]
