"""The tag's compose file made private for the drill's environment (lifecycle/compose_file.py).

The file comes from a tag: whatever it says is read as data, and nothing in it may reach the
live stack (its ports, container names, volumes, networks or host folders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taydash_hooks.errors import TaydashError
from taydash_hooks.lifecycle import compose_file


def _made(tmp_path: Path, text: str) -> compose_file.Throwaway:
    path = tmp_path / "compose.yml"
    path.write_text(text)
    return compose_file.throwaway(path)


def test_what_would_touch_the_live_stack_is_taken_out_and_said(tmp_path: Path) -> None:
    made = _made(tmp_path, """
services:
  db:
    image: postgres:18
    container_name: prod-db
    ports: ["5432:5432"]
    volumes:
      - /srv/pgdata:/var/lib/postgresql/data
      - ./init.sql:/docker-entrypoint-initdb.d/i.sql
      - pgdata:/x
  vm:
    image: victoriametrics/victoria-metrics
    volumes:
      - {type: bind, source: /srv/vm, target: /storage}
    networks: [shared]
volumes:
  pgdata: {external: true}
  named: {name: prod_named}
networks:
  shared: {external: true, name: prod_net}
""")
    doc = yaml.safe_load(made.text)
    db, vm = doc["services"]["db"], doc["services"]["vm"]
    assert "ports" not in db and "container_name" not in db
    assert db["volumes"][0] == "taydash_drill_0:/var/lib/postgresql/data"
    assert db["volumes"][1:] == ["./init.sql:/docker-entrypoint-initdb.d/i.sql", "pgdata:/x"]
    assert vm["volumes"] == [{"type": "volume", "source": "taydash_drill_1", "target": "/storage"}]
    assert doc["volumes"]["pgdata"] == {} and doc["volumes"]["named"] == {}
    assert doc["networks"]["shared"] == {}
    assert {"taydash_drill_0", "taydash_drill_1"} <= set(doc["volumes"])
    assert made.changes == (
        "published ports of db removed", "container_name prod-db of db removed",
        "host path /srv/pgdata of db replaced by a fresh volume",
        "host path /srv/vm of vm replaced by a fresh volume",
        "external of volume pgdata removed (a fresh one)", "name of volume named removed (a fresh one)",
        "external of network shared removed (a fresh one)", "name of network shared removed (a fresh one)")
    assert made.images == {"db": "postgres:18", "vm": "victoriametrics/victoria-metrics"}


@pytest.mark.parametrize("text, said", [
    ("services:\n  db:\n    image: x\n    network_mode: host\n", "network_mode host"),
    ("services:\n  db:\n    image: x\n    network_mode: \"container:prod-db\"\n", "container:prod-db"),
    ("services: [unclosed\n", "not valid YAML at line"),
    ("services:\n  db: !!python/object/apply:os.system [\"touch /tmp/owned\"]\n", "not valid YAML"),
    ("version: '3'\n", "has no services"),
    ("services:\n  db: just a string\n", "is not a mapping"),
])
def test_a_hostile_or_broken_file_is_refused_in_one_sentence(tmp_path: Path, text: str,
                                                             said: str) -> None:
    with pytest.raises(TaydashError) as err:
        _made(tmp_path, text)
    assert said in err.value.message and err.value.code == 1
    assert not Path("/tmp/owned").exists()


def test_a_huge_file_and_a_symlinked_one_are_not_read(tmp_path: Path) -> None:
    with pytest.raises(TaydashError) as err:
        _made(tmp_path, "services: {}\n" + "#" * (compose_file.MAX_BYTES + 1))
    assert "larger than" in err.value.message
    (tmp_path / "compose.yml").unlink()
    (tmp_path / "compose.yml").symlink_to("/etc/passwd")
    with pytest.raises(TaydashError) as err:
        compose_file.find(tmp_path)
    assert "no compose file" in err.value.message


def test_paths_leading_out_of_the_clone_are_not_handed_to_docker(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    (tmp_path / "out").symlink_to("/etc")
    made = _made(tmp_path, """
services:
  app:
    image: app:1
    volumes: ["./inside:/a", "../../etc:/b", "./out:/c", "cache:/d"]
""")
    mounts = yaml.safe_load(made.text)["services"]["app"]["volumes"]
    assert mounts == ["./inside:/a", "taydash_drill_0:/b", "taydash_drill_1:/c", "cache:/d"]
    assert made.changes == ("host path ../../etc of app replaced by a fresh volume",
                            "host path ./out of app replaced by a fresh volume")
    with pytest.raises(TaydashError) as err:
        _made(tmp_path, "services:\n  app:\n    image: a\n    env_file: [/etc/shadow]\n")
    assert "reads env_file '/etc/shadow' from outside the tag's clone" in err.value.message


def test_the_tags_symlinks_are_never_written_through(tmp_path: Path) -> None:
    from taydash_hooks.lifecycle import environment

    clone, victim = tmp_path / "clone", tmp_path / "victim"
    clone.mkdir()
    victim.write_text("this host's file\n")
    (clone / "compose.yml").write_text("services:\n  app:\n    image: a\n")
    (clone / ".env").symlink_to(victim)
    (clone / environment.FILE_NAME).symlink_to(victim)
    (clone / ".env.example").write_text("A=1\n")
    rebuild = environment.Rebuild("p")
    environment._prepare(clone, None, rebuild)
    assert victim.read_text() == "this host's file\n"
    assert (clone / ".env").read_text() == "A=1\n" and not (clone / ".env").is_symlink()
    assert (clone / ".env").stat().st_mode & 0o777 == 0o600
    assert "services" in (clone / environment.FILE_NAME).read_text()
    # An .env.example that is a link to this host's files is not read at all.
    (clone / ".env").unlink()
    (clone / ".env.example").unlink()
    (clone / ".env.example").symlink_to(victim)
    environment._prepare(clone, None, environment.Rebuild("p"))
    assert not (clone / ".env").exists()
