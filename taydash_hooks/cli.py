"""The click command line. It only wires options to core functions.

Core modules never import click; every command loads what it needs lazily
so `taydash --help` stays cheap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from taydash_hooks.errors import Exit

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


def _confirm(question: str) -> bool:
    if sys.stdin is None or not sys.stdin.isatty():
        # No terminal: one line of input decides, and none at all (EOF) is a plain "no",
        # not an interrupt.
        click.echo(f"{question} [y/N]: ", err=True, nl=False)
        answer = sys.stdin.readline() if sys.stdin is not None else ""
        click.echo(answer.strip(), err=True)
        return answer.strip().lower() in ("y", "yes")
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
    """Install the pre-push and reference-transaction shims (pre-receive with --server).

    Example: taydash install   (in a bare repository: taydash install --server)
    """
    state = _setup()
    from taydash_hooks.install import install as do_install

    for line in do_install(state.dir, force=force, server=server):
        click.echo(line, err=True)


@cli.command()
@common
def uninstall() -> None:
    """Remove the shims and restore any hook they had kept as .legacy.

    Example: taydash uninstall
    """
    state = _setup()
    from taydash_hooks.install import uninstall as do_uninstall

    for line in do_uninstall(state.dir):
        click.echo(line, err=True)


@cli.group()
@common
def hook() -> None:
    """What the installed shims run (git chooses the arguments).

    Example: git push runs: taydash hook pre-push origin URL < refs
    """


def _hook(*argv: str) -> int:
    """The shims' own dispatcher, run where -C points (hooks run at the work tree root)."""
    state = _setup()
    if state.cwd is not None:
        os.chdir(state.cwd)
    from taydash_hooks.hooks.main import dispatch

    return dispatch(list(argv))


@hook.command("pre-push")
@click.argument("remote")
@click.argument("url")
@common
def hook_pre_push(remote: str, url: str) -> int:
    """Check a push: reads git's pre-push stdin.

    Example: git push runs this through the pre-push shim
    """
    return _hook("pre-push", remote, url)


@hook.command("reference-transaction")
@click.argument("state_name", metavar="STATE")
@common
def hook_reference_transaction(state_name: str) -> int:
    """Tag policy at creation (prepared) and snapshot trigger (committed).

    Example: git tag -s v1.2.0 runs this through the reference-transaction shim
    """
    return _hook("reference-transaction", state_name)


@hook.command("pre-receive")
@common
def hook_pre_receive() -> int:
    """Server side: tag policy and protected branches for a bare repository.

    Example: git receive-pack runs this through the pre-receive shim
    """
    return _hook("pre-receive")


# --- validation and tags ----------------------------------------------------------


@cli.command()
@click.argument("rev", default="HEAD")
@common
def validate(rev: str) -> int:
    """Run the validation gate on REV (default HEAD) without pushing.

    Example: taydash validate HEAD~1
    """
    state = _setup()
    from taydash_hooks.commands import validate as validate_rev

    return validate_rev.run(state.dir, rev)


@cli.command("check-tags")
@click.argument("tags", nargs=-1)
@click.option("--all", "all_tags", is_flag=True, help="Every local tag matching tags.release.")
@click.option("--ci", is_flag=True, help="Judge the tag this GitHub Actions / GitLab CI run is for "
                                         "(the hosted remote's server-side check).")
@click.option("--explain", metavar="NAME",
              help="Say which naming rule NAME breaks and the nearest name that passes.")
@json_option
@common
def check_tags(tags: tuple[str, ...], all_tags: bool, ci: bool, explain: str | None,
               as_json: bool) -> int:
    """Policy verdict (signer, kind, accept/reject, reason) for each TAG.

    Example: taydash check-tags --all
    """
    state = _setup()
    from taydash_hooks.commands import check_tags as tag_report

    if explain is not None:
        return tag_report.explain(state.dir, explain, as_json)
    if ci:
        if tags or all_tags:
            raise click.UsageError("--ci judges the CI run's own tag; name no TAG and no --all.")
        return tag_report.run_ci(state.dir, as_json)
    return tag_report.run(state.dir, list(tags), all_tags, as_json)


# --- snapshots, backups, restores, objects ----------------------------------------


@cli.command()
@click.argument("tag")
@click.option("--only", metavar="KIND,...", help="Only these kinds (postgres,victoriametrics,config).")
@common
def snapshot(tag: str, only: str | None) -> int:
    """Take the snapshots for TAG now (does nothing when its manifest exists).

    Example: taydash snapshot v1.2.0 --only postgres
    """
    state = _setup()
    from taydash_hooks.commands import snapshot as core

    kinds = [k.strip() for k in only.split(",") if k.strip()] if only else None
    return core.run(state.dir, tag, kinds)


@cli.group()
@common
def backups() -> None:
    """Manifests in the store: list, show, verify, prune, delete.

    Example: taydash backups verify v1.2.0 --deep
    """


@backups.command("list")
@click.option("--orphans", is_flag=True,
              help="List the store objects no manifest, tombstone or run of this clone accounts "
                   "for (reported only: nothing is deleted by guesswork).")
@json_option
@common
def backups_list(orphans: bool, as_json: bool) -> int:
    """Every backup (manifest) in the store, and whether its manifest can be believed.

    Example: taydash backups list --json
    """
    state = _setup()
    from taydash_hooks.commands import backups as core

    if orphans:
        return core.list_orphans(state.dir, as_json)
    return core.list_backups(state.dir, as_json)


@backups.command("show")
@click.argument("tag")
@json_option
@common
def backups_show(tag: str, as_json: bool) -> int:
    """The manifest of TAG.

    Example: taydash backups show v1.2.0
    """
    state = _setup()
    from taydash_hooks.commands import backups as core

    return core.show(state.dir, tag, as_json)


@backups.command("verify")
@click.argument("tag", required=False)
@click.option("--all", "all_", is_flag=True, help="Every backup in the store, a few at a time.")
@click.option("--last", type=click.IntRange(1, 100_000), help="The N newest backups by version.")
@click.option("--deep", is_flag=True, help="Also read every dump fully with pg_restore and "
              "decrypt and list the config bundle (exit 3 when a key for that is missing here).")
@json_option
@common
def backups_verify(tag: str | None, all_: bool, last: int | None, deep: bool,
                   as_json: bool) -> int:
    """Re-hash every artifact of TAG (or --all, or --last N) against its manifest.

    Example: taydash backups verify v1.2.0 --deep;  taydash backups verify --all
    """
    state = _setup()
    from taydash_hooks.commands import backups as core

    if sum((tag is not None, all_, last is not None)) != 1:
        raise click.UsageError("give one of TAG, --all or --last N.")
    if tag is not None:
        return core.verify(state.dir, tag, deep, as_json)
    return core.verify_many(state.dir, last, deep, as_json)


@backups.command("prune")
@click.option("--keep-last", type=click.IntRange(0, 1_000_000), default=0,
              help="Keep the N newest backups.")
@click.option("--keep-monthly", type=click.IntRange(0, 1_000_000), default=0,
              help="Keep the newest backup of each of the N latest months.")
@click.option("--keep-within", metavar="DURATION", default="",
              help="Keep backups within DURATION (30d, 12h, 1y6m) of the newest one.")
@click.option("--dry-run", is_flag=True, help="Print what would be kept and removed; remove nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before removing (no terminal and no --yes: "
              "nothing is removed).")
@common
def backups_prune(keep_last: int, keep_monthly: int, keep_within: str, dry_run: bool,
                  yes: bool) -> int:
    """Remove the backups no retention rule keeps (never the newest release's full backup, never
    a locked one).

    Defaults come from [snapshots.retention]; like restic's forget, every backup shows why it stays.

    Example: taydash backups prune --keep-last 5 --keep-monthly 12 --dry-run
    """
    state = _setup()
    from taydash_hooks.commands import retention as core
    from taydash_hooks.config import DURATION
    from taydash_hooks.snapshots.retention import Policy, parse_duration

    if keep_within and not DURATION.fullmatch(keep_within):
        raise click.BadParameter("expected a duration like 30d, 12h or 1y6m", param_hint="--keep-within")
    if keep_within:
        parse_duration(keep_within)  # bounded: exit 2 naming the flag
    # No terminal to ask on (cron, a pipe): nothing is removed without --yes, and the list says
    # "would remove" (what apt-get does without -y).
    return core.prune(state.dir, Policy(keep_last, keep_monthly, keep_within), dry_run, yes,
                      _confirm if sys.stdin is not None and sys.stdin.isatty() else None)


@backups.command("delete")
@click.argument("tag")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common
def backups_delete(tag: str, yes: bool) -> int:
    """Delete the backup of TAG: manifest first, then its artifacts (safe to rerun).

    Example: taydash backups delete v0.3.0 --yes
    """
    state = _setup()
    from taydash_hooks.commands import retention as core

    return core.delete_one(state.dir, tag, yes, _confirm)


@backups.command("resign")
@click.argument("tags", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every backup in the store.")
@click.option("--yes", is_flag=True, help="Do not ask before replacing signatures (no terminal "
              "and no --yes: nothing is replaced).")
@common
def backups_resign(tags: tuple[str, ...], every: bool, yes: bool) -> int:
    """Sign manifests again with the current user.signingkey, after a key rotation.

    Each manifest is checked as every reader checks it first; an unsigned one is never signed.
    Then the old key can be revoked without losing its backups (SECURITY.md, "Rotating the signing
    key").

    Example: taydash backups resign --all --yes
    """
    state = _setup()
    from taydash_hooks.commands import resign as core

    return core.resign(state.dir, list(tags), every, yes, _confirm)


@cli.group()
@common
def restore() -> None:
    """Restore a database, VictoriaMetrics storage, the config bundle or git content.

    Example: taydash restore db v1.2.0 --target-db app_restored
    """


@restore.command("db")
@click.argument("tag")
@click.option("--target-db", required=True, help="Database to create (must not exist).")
@click.option("--database", help="Which configured database's dump (when there are several).")
@click.option("--host", help="Restore onto this PostgreSQL server (default: the configured host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Its port (default: the configured port).")
@click.option("--user", help="Connect as this role (default: the configured user).")
@click.option("--with-roles", is_flag=True,
              help="First create the recorded roles the server lacks, and keep the owners.")
@click.option("--allow-privileged-roles", is_flag=True,
              help="Let --with-roles grant SUPERUSER, REPLICATION, BYPASSRLS, CREATEROLE.")
@click.option("--trust-unsigned-roles", is_flag=True,
              help="Let --with-roles apply roles from a manifest no allowed key signed.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1,
              help="pg_restore in parallel (the archive is spooled to a file first).")
@click.option("--into-empty", is_flag=True,
              help="TARGET_DB may exist if it holds nothing of its own (a fresh container's "
                   "POSTGRES_DB): it is replaced by the dump's.")
@common
def restore_db(tag: str, target_db: str, database: str | None, host: str | None,
               port: int | None, user: str | None, with_roles: bool,
               allow_privileged_roles: bool, trust_unsigned_roles: bool, jobs: int,
               into_empty: bool) -> int:
    """Create TARGET_DB and restore the dump into it in one pass, its checksum checked.

    The server is [snapshots.postgres] host, port and user unless --host/--port/--user say
    otherwise; TARGET_DB must not exist there (nothing existing is ever touched), unless
    --into-empty and it holds nothing of its own.

    Example: taydash restore db v1.2.0 --target-db app --host new-cluster --with-roles
    """
    state = _setup()
    from taydash_hooks.commands import restore as core
    from taydash_hooks.snapshots.kinds.postgres import PgRestoreOptions

    return core.restore(state.dir, tag, "postgres", target_db, options=PgRestoreOptions(
        database=database, server=(host, port, user), with_roles=with_roles,
        allow_privileged_roles=allow_privileged_roles,
        trust_unsigned_roles=trust_unsigned_roles, jobs=jobs, into_empty=into_empty))


@restore.command("vm")
@click.argument("tag")
@click.option("--storage-data-path", type=click.Path(file_okay=False),
              help="Empty directory to restore into (inside the container with an exec prefix); "
                   "with --in-place, the service's data path (default: the configured one).")
@click.option("--in-place", is_flag=True,
              help="Replace the running service's own data (a compose exec prefix): stop it, "
                   "restore, check, keep what it held aside, start it.")
@common
def restore_vm(tag: str, storage_data_path: str | None, in_place: bool) -> int:
    """vmrestore into an empty directory, then check every file's hash.

    Example: taydash restore vm v1.2.0 --storage-data-path /srv/vm-restored
    """
    if not in_place and not storage_data_path:
        raise click.UsageError("--storage-data-path is required (or --in-place)")
    state = _setup()
    from taydash_hooks.commands import restore as core
    from taydash_hooks.snapshots.kinds.victoriametrics import VmRestoreOptions

    return core.restore(state.dir, tag, "victoriametrics", storage_data_path or "",
                        options=VmRestoreOptions(in_place=in_place))


@restore.command("config")
@click.argument("tag")
@click.option("--dest", required=True, type=click.Path(file_okay=False),
              help="Empty directory to unpack into.")
@common
def restore_config(tag: str, dest: str) -> int:
    """Decrypt and unpack the config bundle of TAG.

    Example: taydash restore config v1.2.0 --dest /tmp/config-v1.2.0
    """
    state = _setup()
    from taydash_hooks.commands import restore as core

    return core.restore(state.dir, tag, "config", dest)


@restore.command("git")
@click.argument("tag")
@click.option("--branch", help="Branch to create (default restore-<tag>).")
@click.option("--path", "paths", multiple=True, help="Only restore this path (repeatable).")
@click.option("--force", is_flag=True, help="Overwrite uncommitted changes in those paths.")
@common
def restore_git(tag: str, branch: str | None, paths: tuple[str, ...], force: bool) -> int:
    """Create a branch at TAG, or restore only the given paths from it.

    Example: taydash restore git v1.2.0 --path infra/
    """
    state = _setup()
    from taydash_hooks.commands import restore_git

    return restore_git.run(state.dir, tag, branch, list(paths), force)


@cli.group()
@common
def store() -> None:
    """The store itself: prepare a bucket before the first backup."""


@store.command("init")
@click.option("--object-lock-days", type=click.IntRange(0, 36500),
              help="Create the bucket with Object Lock (possible only at creation); default "
                   "[snapshots.s3] object_lock_days.")
@click.option("--yes", is_flag=True, help="Change an existing bucket (turn versioning on).")
@common
def store_init(object_lock_days: int | None, yes: bool) -> int:
    """Create the bucket when missing and turn versioning on; an existing bucket is changed
    only with --yes (without it, what would change is printed).

    Example: taydash store init --object-lock-days 30
    """
    state = _setup()
    from taydash_hooks.commands import store_init as core

    return core.run(state.dir, object_lock_days, yes)


@cli.group()
@common
def objects() -> None:
    """Object versions in the store.

    Example: taydash objects versions db-backups/v1.2.0_20260101_120000-1a2b3c4d.dump
    """


@objects.command("versions")
@click.argument("key")
@common
def objects_versions(key: str) -> int:
    """List the versions of KEY.

    Example: taydash objects versions manifests/v1.2.0.json
    """
    state = _setup()
    from taydash_hooks.commands import objects as core

    return core.versions(state.dir, key)


@objects.command("get")
@click.argument("key")
@click.option("--version-id", required=True, help="The version (from `objects versions`).")
@click.option("-o", "output", required=True, type=click.Path(dir_okay=False),
              help="File to write (kept only when its SHA-256 matches the manifest).")
@common
def objects_get(key: str, version_id: str, output: str) -> int:
    """Download one version of KEY, checking its checksum.

    Example: taydash objects get manifests/v1.2.0.json --version-id ID -o old.json
    """
    state = _setup()
    from taydash_hooks.commands import objects as core

    return core.get(state.dir, key, version_id, state.dir / output)


@objects.command("promote")
@click.argument("key")
@click.option("--version-id", required=True, help="The version (from `objects versions`).")
@common
def objects_promote(key: str, version_id: str) -> int:
    """Make an old version of KEY the current one again.

    Example: taydash objects promote db-backups/v1.2.0_....dump --version-id ID
    """
    state = _setup()
    from taydash_hooks.commands import objects as core

    return core.promote(state.dir, key, version_id)


# --- the deliberate workflow --------------------------------------------------------


@cli.command()
@click.argument("tag")
@click.option("-m", "message", help="Tag message.")
@click.option("--yes", is_flag=True, help="Do not ask before pushing.")
@common
def backup(tag: str, message: str | None, yes: bool) -> int:
    """Clean tree, validate, fetch, signed tag, snapshots, push HEAD and TAG, confirm.

    Example: taydash backup v1.2.0-milestone-mqtt -m "MQTT ingestion works"
    """
    state = _setup()
    from taydash_hooks.lifecycle import backup as workflow

    msg = message or f"Backup {tag}"
    return workflow.backup(state.dir, workflow.BackupPlan(tag, msg, push=True, yes=yes), _confirm)


@cli.command()
@click.argument("part", type=click.Choice(["major", "minor", "patch"]))
@click.argument("description", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--push", is_flag=True, help="Also push, as `taydash backup` does.")
@click.option("--allow-empty", is_flag=True, help="Release even with no commits since the last one.")
@common
def release(part: str, description: str | None, yes: bool, push: bool, allow_empty: bool) -> int:
    """Next semver tag with a changelog message from commits since the last release.

    Example: taydash release minor "MQTT ingestion" --push
    """
    state = _setup()
    from taydash_hooks.commands import release as workflow

    return workflow.release(state.dir, part, description, yes, push, _confirm, allow_empty)


@cli.command()
@click.argument("tag")
@json_option
@common
def verify(tag: str, as_json: bool) -> int:
    """Tag on the remote, signature by policy, fresh clone validates, artifacts verify.

    Example: taydash verify v1.2.0 --json
    """
    state = _setup()
    from taydash_hooks.commands import verify as core

    return core.verify(state.dir, tag, as_json)


@cli.command()
@click.option("--last", "last", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many of the newest release tags to drill.")
@click.option("--environment", is_flag=True,
              help="Also start each tag's compose stack fresh beside the live one, restore "
                   "into it and run [drill] commands against it ([drill] environment = true).")
@json_option
@common
def drill(last: int, environment: bool, as_json: bool) -> int:
    """Restore drill over the last N release tags, as a table.

    Side effects: each tag's dump is restored for real into a scratch database
    (taydash_drill_<random>) on the configured PostgreSQL server, often production, which is
    dropped afterwards; VictoriaMetrics and the config bundle go to a temporary folder. With
    --environment, a compose project taydash-drill-<pid>-<random> runs from a fresh clone at
    the tag and is taken down with its volumes afterwards.

    Example: taydash drill --last 3 --environment
    """
    state = _setup()
    from taydash_hooks.commands import drill as core

    return core.drill(state.dir, last, as_json, environment)


@cli.command()
@click.option("--strict", is_flag=True, help="Exit 1 when anything is past its threshold "
                                             "(for cron and CI).")
@json_option
@common
def health(strict: bool, as_json: bool) -> int:
    """Time since the last backup, unpushed commits, tags without backups, large blobs.

    Example: taydash health --strict || mail -s "backups need attention" ops@example.com
    """
    state = _setup()
    from taydash_hooks.commands import health as core

    return core.run(state.dir, as_json, strict)


@cli.command()
@click.option("--push", "to_push", is_flag=True,
              help="POST them to [metrics] push_url instead of printing them.")
@common
def metrics(to_push: bool) -> int:
    """Backup health in the Prometheus text format (the figures of health --json).

    Per kind: time, size and duration of the newest backup; backups in the store; release
    tags without a backup; the last verify, drill and background snapshot.

    Example: taydash metrics --push   (or: taydash metrics > /var/lib/node_exporter/taydash.prom)
    """
    state = _setup()
    from taydash_hooks.commands import metrics as core

    return core.run(state.dir, to_push)


@cli.command()
@common
def doctor() -> int:
    """Check signing set-up, tools, store and credentials; print the fix for each failure.

    Example: taydash doctor
    """
    state = _setup()
    from taydash_hooks.commands import doctor as core

    return core.run(state.dir)


@cli.command()
@click.option("--dir", "sandbox_dir", type=click.Path(file_okay=False),
              help="Sandbox folder (default: a new temporary folder).")
@click.option("--compose", is_flag=True,
              help="PostgreSQL and VictoriaMetrics as a docker compose stack (emulated with "
                   "mount namespaces; needs root), reached through `docker compose exec -T`.")
@common
def demo(sandbox_dir: str | None, compose: bool) -> int:
    """The whole lifecycle in a sandbox on embedded defaults.

    Example: taydash demo --dir /tmp/taydash-demo
    """
    state = _setup()
    from taydash_hooks.commands import demo as core

    return core.run(state.dir / sandbox_dir if sandbox_dir else None, compose)


def _run() -> int:
    try:
        rv = cli.main(prog_name="taydash", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None
    except click.ClickException as exc:
        exc.show()
        return Exit.USAGE
    return rv if isinstance(rv, int) else Exit.OK


def main() -> None:
    """Console entry point: the one entry's exit codes (see :mod:`taydash_hooks.entry`)."""
    from taydash_hooks import entry

    entry.main(_run)
