"""The click command line. It only wires options to core functions.

Core modules never import click; every command loads what it needs lazily
so `taydash --help` stays cheap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from taydash_hooks.errors import Exit, TaydashError

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Options shared by every command (-C, -v, -q), wherever they were given."""

    def __init__(self) -> None:
        self.cwd: Path | None = None
        self.verbosity = 0

    @property
    def dir(self) -> Path:
        return self.cwd or Path.cwd()


def _state() -> State:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def _set_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        path = Path(value)
        base = _state().cwd or Path.cwd()
        path = path if path.is_absolute() else base / path
        if not path.is_dir():
            raise click.BadParameter(f"{value} is not a directory", ctx, param)
        _state().cwd = path


def _add_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    _state().verbosity += value


def _add_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _state().verbosity = -1


def common(f: F) -> F:
    """-C DIR, -v and -q, accepted on the group and on every command."""
    f = click.option("-C", "directory", metavar="DIR", expose_value=False, is_eager=True,
                     callback=_set_dir, help="Run as if started in DIR (like git -C).")(f)
    f = click.option("-v", "--verbose", count=True, expose_value=False, callback=_add_verbose,
                     help="More output (repeat for debug).")(f)
    f = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_add_quiet,
                     help="Only errors.")(f)
    return f


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document on stdout.")


def _setup() -> State:
    from taydash_hooks.output import setup_logging

    state = _state()
    setup_logging(state.verbosity)
    return state


def _exit(code: int) -> NoReturn:
    sys.exit(int(code))


def _confirm(question: str) -> bool:
    return click.confirm(question, default=False, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taydash-hooks", prog_name="taydash")
@common
def cli() -> None:
    """Git hooks and commands for manual, deliberate backups.

    Pushes go out only when validation passes on the exact commits pushed;
    release tags must be signed by an allowed key and follow the naming
    convention; creating a release tag snapshots PostgreSQL and
    VictoriaMetrics into an object store with SHA-256 checksums.
    """


# --- hooks ------------------------------------------------------------------


@cli.command()
@click.option("--force", is_flag=True, help="Install even where core.hooksPath points outside.")
@click.option("--server", is_flag=True, help="Install pre-receive into a bare repository.")
@common
def install(force: bool, server: bool) -> None:
    """Install the pre-push and reference-transaction shims (pre-receive with --server)."""
    state = _setup()
    from taydash_hooks.install import install as do_install

    for line in do_install(state.dir, force=force, server=server):
        click.echo(line, err=True)


@cli.command()
@common
def uninstall() -> None:
    """Remove the shims and restore any hook they had kept as .legacy."""
    state = _setup()
    from taydash_hooks.install import uninstall as do_uninstall

    for line in do_uninstall(state.dir):
        click.echo(line, err=True)


@cli.group()
@common
def hook() -> None:
    """What the installed shims run (git chooses the arguments)."""


@hook.command("pre-push")
@click.argument("remote")
@click.argument("url")
@common
def hook_pre_push(remote: str, url: str) -> None:
    """Check a push: reads git's pre-push stdin."""
    state = _setup()
    from taydash_hooks import pre_push

    _exit(pre_push.run_hook(remote, url, sys.stdin.buffer.read(), state.cwd))


@hook.command("reference-transaction")
@click.argument("state_name", metavar="STATE")
@common
def hook_reference_transaction(state_name: str) -> None:
    """Tag policy at creation (prepared) and snapshot trigger (committed)."""
    state = _setup()
    from taydash_hooks import ref_transaction

    _exit(ref_transaction.run_hook(state_name, sys.stdin.buffer.read(), state.cwd))


@hook.command("pre-receive")
@common
def hook_pre_receive() -> None:
    """Server side: tag policy and protected branches for a bare repository."""
    state = _setup()
    from taydash_hooks import pre_receive

    _exit(pre_receive.run_hook(sys.stdin.buffer.read(), state.cwd))


# --- validation and tags ----------------------------------------------------------


@cli.command()
@click.argument("rev", default="HEAD")
@common
def validate(rev: str) -> None:
    """Run the validation gate on REV (default HEAD) without pushing."""
    state = _setup()
    from taydash_hooks import validate_rev

    _exit(validate_rev.run(state.dir, rev))


@cli.command("check-tags")
@click.argument("tags", nargs=-1)
@click.option("--all", "all_tags", is_flag=True, help="Every local tag matching tags.release.")
@json_option
@common
def check_tags(tags: tuple[str, ...], all_tags: bool, as_json: bool) -> None:
    """Policy verdict (signer, kind, accept/reject, reason) for each TAG."""
    state = _setup()
    from taydash_hooks import tag_report

    _exit(tag_report.run(state.dir, list(tags), all_tags, as_json))


# --- snapshots, backups, restores, objects ----------------------------------------


@cli.command()
@click.argument("tag")
@click.option("--only", metavar="KIND,...", help="Only these kinds (postgres,victoriametrics,config).")
@common
def snapshot(tag: str, only: str | None) -> None:
    """Take the snapshots for TAG now (does nothing when its manifest exists)."""
    state = _setup()
    from taydash_hooks import config as config_mod
    from taydash_hooks import git
    from taydash_hooks.snapshots import take

    repo = git.find_repo(state.dir)
    kinds = [k.strip() for k in only.split(",") if k.strip()] if only else None
    take(repo, config_mod.load(repo), tag, kinds)


@cli.group()
@common
def backups() -> None:
    """Manifests in the store: list, show, verify."""


@backups.command("list")
@json_option
@common
def backups_list(as_json: bool) -> None:
    """Every backup (manifest) in the store."""
    state = _setup()
    from taydash_hooks import backups as core

    _exit(core.list_backups(state.dir, as_json))


@backups.command("show")
@click.argument("tag")
@json_option
@common
def backups_show(tag: str, as_json: bool) -> None:
    """The manifest of TAG."""
    state = _setup()
    from taydash_hooks import backups as core

    _exit(core.show(state.dir, tag, as_json))


@backups.command("verify")
@click.argument("tag")
@click.option("--deep", is_flag=True, help="Also read every dump fully with pg_restore.")
@json_option
@common
def backups_verify(tag: str, deep: bool, as_json: bool) -> None:
    """Re-hash every artifact of TAG against its manifest."""
    state = _setup()
    from taydash_hooks import backups as core

    _exit(core.verify(state.dir, tag, deep, as_json))


@cli.group()
@common
def restore() -> None:
    """Restore a database, VictoriaMetrics storage, the config bundle or git content."""


@restore.command("db")
@click.argument("tag")
@click.option("--target-db", required=True, help="Database to create (must not exist).")
@click.option("--database", help="Which configured database's dump (when there are several).")
@common
def restore_db(tag: str, target_db: str, database: str | None) -> None:
    """Verify the dump's checksum, create TARGET_DB and pg_restore into it."""
    state = _setup()
    from taydash_hooks import backups as core

    _exit(core.restore_db(state.dir, tag, target_db, database))


@restore.command("vm")
@click.argument("tag")
@click.option("--storage-data-path", required=True, type=click.Path(file_okay=False),
              help="Empty directory to restore into.")
@common
def restore_vm(tag: str, storage_data_path: str) -> None:
    """vmrestore into an empty directory, then check every file's hash."""
    state = _setup()
    from taydash_hooks import backups as core

    _exit(core.restore_vm(state.dir, tag, state.dir / storage_data_path))


@restore.command("config")
@click.argument("tag")
@click.option("--dest", required=True, type=click.Path(file_okay=False),
              help="Empty directory to unpack into.")
@common
def restore_config(tag: str, dest: str) -> None:
    """Decrypt and unpack the config bundle of TAG."""
    state = _setup()
    from taydash_hooks import backups as core

    _exit(core.restore_config(state.dir, tag, state.dir / dest))


@restore.command("git")
@click.argument("tag")
@click.option("--branch", help="Branch to create (default restore-<tag>).")
@click.option("--path", "paths", multiple=True, help="Only restore this path (repeatable).")
@common
def restore_git(tag: str, branch: str | None, paths: tuple[str, ...]) -> None:
    """Create a branch at TAG, or restore only the given paths from it."""
    state = _setup()
    from taydash_hooks import restore_git

    _exit(restore_git.run(state.dir, tag, branch, list(paths)))


@cli.group()
@common
def objects() -> None:
    """Object versions in the store."""


@objects.command("versions")
@click.argument("key")
@common
def objects_versions(key: str) -> None:
    """List the versions of KEY."""
    state = _setup()
    from taydash_hooks import objects as core

    _exit(core.versions(state.dir, key))


@objects.command("get")
@click.argument("key")
@click.option("--version-id", required=True)
@click.option("-o", "output", required=True, type=click.Path(dir_okay=False))
@common
def objects_get(key: str, version_id: str, output: str) -> None:
    """Download one version of KEY, checking its checksum."""
    state = _setup()
    from taydash_hooks import objects as core

    _exit(core.get(state.dir, key, version_id, state.dir / output))


@objects.command("promote")
@click.argument("key")
@click.option("--version-id", required=True)
@common
def objects_promote(key: str, version_id: str) -> None:
    """Make an old version of KEY the current one again."""
    state = _setup()
    from taydash_hooks import objects as core

    _exit(core.promote(state.dir, key, version_id))


# --- the deliberate workflow --------------------------------------------------------


@cli.command()
@click.argument("tag")
@click.option("-m", "message", help="Tag message.")
@click.option("--yes", is_flag=True, help="Do not ask before pushing.")
@common
def backup(tag: str, message: str | None, yes: bool) -> None:
    """Clean tree, validate, fetch, signed tag, snapshots, push HEAD and TAG, confirm."""
    state = _setup()
    from taydash_hooks import workflow

    msg = message or f"Backup {tag}"
    _exit(workflow.backup(state.dir, workflow.BackupPlan(tag, msg, push=True, yes=yes), _confirm))


@cli.command()
@click.argument("part", type=click.Choice(["major", "minor", "patch"]))
@click.argument("description", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--push", is_flag=True, help="Also push, as `taydash backup` does.")
@common
def release(part: str, description: str | None, yes: bool, push: bool) -> None:
    """Next semver tag with a changelog message from commits since the last release."""
    state = _setup()
    from taydash_hooks import workflow

    _exit(workflow.release(state.dir, part, description, yes, push, _confirm))


@cli.command()
@click.argument("tag")
@json_option
@common
def verify(tag: str, as_json: bool) -> None:
    """Tag on the remote, signature by policy, fresh clone validates, artifacts verify."""
    state = _setup()
    from taydash_hooks import drill as core

    _exit(core.verify(state.dir, tag, as_json))


@cli.command()
@click.option("--last", "last", default=5, show_default=True, type=click.IntRange(min=1))
@json_option
@common
def drill(last: int, as_json: bool) -> None:
    """Restore drill over the last N release tags, as a table."""
    state = _setup()
    from taydash_hooks import drill as core

    _exit(core.drill(state.dir, last, as_json))


@cli.command()
@json_option
@common
def health(as_json: bool) -> None:
    """Time since the last backup, unpushed commits, tags without backups, large blobs."""
    state = _setup()
    from taydash_hooks import health as core

    _exit(core.run(state.dir, as_json))


@cli.command()
@common
def doctor() -> None:
    """Check signing set-up, tools, store and credentials; print the fix for each failure."""
    state = _setup()
    from taydash_hooks import doctor as core

    _exit(core.run(state.dir))


@cli.command()
@click.option("--dir", "sandbox_dir", type=click.Path(file_okay=False),
              help="Sandbox folder (default: a new temporary folder).")
@common
def demo(sandbox_dir: str | None) -> None:
    """The whole lifecycle in a sandbox on embedded defaults."""
    state = _setup()
    from taydash_hooks import demo as core

    _exit(core.run(state.dir / sandbox_dir if sandbox_dir else None))


def main() -> None:
    """Console entry point: map errors to SPEC.md's exit codes, no traceback for known ones."""
    try:
        cli.main(prog_name="taydash", standalone_mode=False)
    except TaydashError as exc:
        click.echo(f"taydash: {exc.message}", err=True)
        sys.exit(int(exc.code))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(Exit.USAGE)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("taydash: interrupted", err=True)
        sys.exit(Exit.INTERRUPTED)
    except BrokenPipeError:
        os._exit(0)
    sys.exit(0)
