"""The tag's compose file, made fit to run beside the live stack (the drill's environment).

The file comes from the tag, that is from anyone who could push one: it is read as data
(YAML's safe loader, no tags that build objects) and only ever handed to ``docker compose``.
What would reach outside the throwaway project is taken out, and each change is said:
published ports, fixed container names, external or named volumes and networks (they would
be the live stack's), host paths mounted into a service (the live data would be written),
and ``network_mode: host`` or a service's network joined to a container (refused: it shares
the live stack's ports and cannot be made private).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taydash_hooks.errors import refused

# The names docker compose looks for, in its order.
NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
MAX_BYTES = 1 << 20  # a compose file larger than this is not one


@dataclass(frozen=True)
class Throwaway:
    """The rewritten file's text and what was changed from the tag's, one line each."""

    text: str
    changes: tuple[str, ...]
    services: tuple[str, ...]
    images: dict[str, str]  # service -> image, for the services that name one


def find(root: Path) -> Path:
    """The compose file of the clone at ``root`` (exit 1 when it has none)."""
    for name in NAMES:
        path = root / name
        if path.is_file() and not path.is_symlink():
            return path
    raise refused(f"the tag has no compose file ({', '.join(NAMES)}) to start.")


def throwaway(path: Path) -> Throwaway:
    """The compose file at ``path`` without what would touch the live stack (exit 1 when it
    cannot be read as a compose file, or cannot be made private)."""
    import yaml

    if path.stat().st_size > MAX_BYTES:
        raise refused(f"{path.name} is larger than {MAX_BYTES} bytes; not a compose file.")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise refused(f"{path.name} is not valid YAML{at}: "
                      f"{getattr(exc, 'problem', None) or exc}.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) \
            or not doc["services"]:
        raise refused(f"{path.name} has no services.")
    changes: list[str] = []
    images: dict[str, str] = {}
    root = path.parent.resolve()
    extra_volumes: dict[str, dict[str, Any]] = {}
    for name, service in doc["services"].items():
        if not isinstance(service, dict):
            raise refused(f"{path.name}: service {name!r} is not a mapping.")
        mode = str(service.get("network_mode", ""))
        if mode == "host" or mode.startswith(("container:", "service:")):
            raise refused(f"{path.name}: service {name} uses network_mode {mode}, which shares "
                          "the network of the host or of another container: it cannot run "
                          "beside the live stack.")
        if service.pop("ports", None):
            changes.append(f"published ports of {name} removed")
        if "container_name" in service:
            changes.append(f"container_name {service.pop('container_name')} of {name} removed")
        if isinstance(service.get("image"), str):
            images[str(name)] = service["image"]
        mounts = service.get("volumes")
        if isinstance(mounts, list):
            service["volumes"] = [_private_mount(name, m, root, extra_volumes, changes)
                                  for m in mounts]
        env_files = service.get("env_file")
        for env_file in [env_files] if isinstance(env_files, str) else env_files or []:
            if not isinstance(env_file, str) or not _inside(root, env_file):
                raise refused(f"{path.name}: service {name} reads env_file {env_file!r} from "
                              "outside the tag's clone; the drill does not hand it this "
                              "host's files.")
    for section in ("volumes", "networks"):
        table = doc.get(section)
        if not isinstance(table, dict):
            continue
        for key, spec in table.items():
            if isinstance(spec, dict):
                for field in ("external", "name"):
                    if spec.pop(field, None) not in (None, False):
                        changes.append(f"{field} of {section[:-1]} {key} removed (a fresh one)")
    if extra_volumes:
        doc.setdefault("volumes", {})
        if not isinstance(doc["volumes"], dict):
            doc["volumes"] = {}
        doc["volumes"].update(extra_volumes)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return Throwaway(text, tuple(changes), tuple(str(s) for s in doc["services"]), images)


def _inside(root: Path, source: str) -> bool:
    """Whether the relative ``source`` names a path inside ``root`` once every symlink of
    the clone is followed (``../..`` or a link the tag placed may lead anywhere)."""
    if source.startswith(("/", "~")):
        return False
    return (root / source).resolve().is_relative_to(root)


def _private_mount(service: str, mount: Any, root: Path, extra: dict[str, dict[str, Any]],
                   changes: list[str]) -> Any:
    """A host path mounted into ``service`` (absolute, from ~, or leading out of the clone)
    becomes a fresh volume; a path inside the clone and a named volume stay."""
    if isinstance(mount, str):
        source, sep, rest = mount.partition(":")
        if not sep or not source.startswith((".", "/", "~")) or _inside(root, source):
            return mount  # a named volume, an anonymous one, or a folder of the clone
        name = f"taydash_drill_{len(extra)}"
        extra[name] = {}
        changes.append(f"host path {source} of {service} replaced by a fresh volume")
        return f"{name}:{rest}"
    if isinstance(mount, dict) and mount.get("type") == "bind":
        source = str(mount.get("source", ""))
        if _inside(root, source):
            return mount
        name = f"taydash_drill_{len(extra)}"
        extra[name] = {}
        changes.append(f"host path {source} of {service} replaced by a fresh volume")
        return {**{k: v for k, v in mount.items() if k not in ("bind", "source")},
                "type": "volume", "source": name}
    return mount
