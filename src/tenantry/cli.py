"""The ``tenantry`` command: a thin layer over :mod:`tenantry.ops` and friends.

Exit status: 0 success, 1 a check failed, 2 bad usage or invalid input (nothing written).
A :class:`~tenantry.support.errors.PlatformError` carries its own exit code.

One file of about 800 lines, on purpose: each command is a few lines of click over an
operation, and the whole command surface reads in one place, in the order ``--help`` lists
it. A package of groups would add a registering module and a level to every import chain
(tests/test_architecture.py keeps those at most 9 files long).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import sys

import click
from sqlalchemy.exc import SQLAlchemyError

import tenantry
from tenantry.client.cli import client as client_cli
from tenantry.config import ALL_BLUEPRINTS
from tenantry.data import audit as audit_log
from tenantry.data.db import tenant_database
from tenantry.data.users import (
    ROLES,
)
from tenantry.home.layout import DEFAULT_RETRY_AFTER, HOME_ENV_VAR, HomeError, TenantHome
from tenantry.jobs.place import check_place
from tenantry.jobs.tables import STATES as JOB_STATES
from tenantry.modules.scaffold import ScaffoldError, new_module
from tenantry.ops.backup import backup_tenant, verify_archive
from tenantry.ops.backups import list_backups
from tenantry.ops.checks import check_tenants
from tenantry.ops.clone import clone_tenant
from tenantry.ops.delete import delete_tenant
from tenantry.ops.gc import collect_garbage, remove_leftovers
from tenantry.ops.hold import require_tenant
from tenantry.ops.jobs import cancel_job, retry_job, tenant_jobs
from tenantry.ops.lifecycle import (
    create_tenant,
    describe_tenant,
    rotate_secret,
    set_enabled,
    set_maintenance,
)
from tenantry.ops.migrate import migrate_tenants
from tenantry.ops.restore import restore_tenant
from tenantry.ops.stats import tenant_stats
from tenantry.platform.actions import add_user, change_user, users_of
from tenantry.platform.address import admin_address
from tenantry.platform.operators import Operators
from tenantry.platform.operators import check_name as check_operator_name
from tenantry.server.hooks import SERVE_JOBS_ENV_VAR
from tenantry.server.log import configure_logging, level_from_environ
from tenantry.server.runner import JobRunner
from tenantry.server.serving import gunicorn_options, jobs_setup, metrics_setup
from tenantry.server.settings import ADMIN_BIND_ENV_VAR, check_bucket, server_settings
from tenantry.support.errors import PlatformError

# Commands say only what goes wrong (the server logs every request: INFO)
COMMAND_LOG_LEVEL = "WARNING"


class InputError(click.ClickException):
    """Invalid input: an invalid or existing slug, an unknown tenant or user. Exit 2."""

    exit_code = 2


def _ended_by(exc: PlatformError) -> click.ClickException:
    """The click error a command ends with for ``exc``: its message, its exit code."""
    error = click.ClickException(str(exc))
    error.exit_code = exc.exit_code
    return error


def _home(ctx: click.Context, creating: bool = False) -> TenantHome:
    """The home the command works on, checked before anything is touched: it must be a
    home (have ``config/``; unless ``creating`` a tenant) on the backend it records."""
    home = ctx.ensure_object(dict)["home"]
    try:
        if not creating:
            home.check_layout()
        home.check_backend()
        home.check_claim()
    except HomeError as exc:
        raise _ended_by(exc) from exc
    return home


def _refusing(operation, *args, **kwargs):
    """Run ``operation``; a platform error ends the command with its message and its exit
    code (refused input 2, a failed operation such as a bad archive or a failing write 1)."""
    try:
        return operation(*args, **kwargs)
    except PlatformError as exc:
        raise _ended_by(exc) from exc


@click.group()
@click.version_option(tenantry.__version__, prog_name="tenantry", message="%(prog)s %(version)s")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar=HOME_ENV_VAR,
    help="Folder holding config/ and tenants/ (default: $TENANTRY_HOME or .).",
)
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """Run and administer tenantry tenants."""
    # Endpoint modules import as the server imports them (gunicorn puts the directory it
    # runs in on the path): from the installed packages and the current directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        configure_logging(level_from_environ(COMMAND_LOG_LEVEL))
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    ctx.ensure_object(dict)["home"] = TenantHome.from_environ(root=home)


@main.group()
def tenants() -> None:
    """Create, list, check, enable, disable and maintain tenants."""


def _tenant_command(name: str):
    """``tenants NAME SLUG [...]``: the command's function gets (ctx, slug, ...)."""

    def decorate(function):
        return tenants.command(name)(click.argument("slug")(click.pass_context(function)))

    return decorate


@tenants.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
@click.option("--host", "hosts", multiple=True, help="Host name routed to this tenant.")
@click.option(
    "--blueprints",
    default=",".join(ALL_BLUEPRINTS),
    show_default=True,
    help="Comma-separated blueprints to enable.",
)
@click.pass_context
def tenants_create(ctx, slug, name, hosts, blueprints):
    """Create tenant SLUG with a fresh secret key and database."""
    names = tuple(part.strip() for part in blueprints.split(",") if part.strip())
    home = _home(ctx, creating=True)
    _refusing(create_tenant, home, slug, name=name, hosts=hosts, blueprints=names)
    click.echo(f"created tenant {slug} in {home.root}")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def tenants_list(ctx, as_json):
    """List tenants: slug, name, hosts, blueprints, enabled, maintenance."""
    home = _home(ctx)
    rows = [describe_tenant(home, slug) for slug in home.slugs()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        if row["maintenance"]:
            state += ",maintenance"
        click.echo(
            f"{row['slug']}\t{row['name'] or '-'}\t{state}\t"
            f"hosts={','.join(row['hosts']) or '-'}\tblueprints={','.join(row['blueprints'])}"
            + (f"\tERROR: {row['error']}" if "error" in row else "")
        )


@tenants.command("stats")
@click.argument("slug", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def tenants_stats(ctx, slug, as_json):
    """What SLUG (or every tenant) holds: users, files, bytes against the quota,
    datasets, audit entries, last activity (newest audit entry). Reads the databases
    without loading the tenants' apps; writes nothing."""
    home = _home(ctx)
    if slug is not None:
        _refusing(require_tenant, home, slug)
    rows = [tenant_stats(home, name) for name in ([slug] if slug else home.slugs())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            click.echo(
                f"{row['slug']}\tusers={_shown(row['users'])}\tfiles={_shown(row['files'])}\t"
                f"bytes={_shown(row['bytes'])}\tquota={_quota(row)}\t"
                f"datasets={_shown(row['datasets'])}\taudit={_shown(row['audit_entries'])}\t"
                f"last_activity={_shown(row['last_activity'])}"
                + (f"\tERROR: {row['error']}" if "error" in row else "")
            )
    if any("error" in row for row in rows):
        sys.exit(1)


def _shown(value) -> str:
    return "-" if value is None else str(value)


def _quota(row: dict) -> str:
    """``used/quota (N%)``: what the quota counts against it."""
    used, quota = row["quota_used"], row["quota"]
    if used is None or not quota:
        return f"{_shown(used)}/{_shown(quota)}"
    return f"{used}/{quota} ({100 * used / quota:.1f}%)"


@tenants.command("check")
@click.argument("slug", required=False)
@click.pass_context
def tenants_check(ctx, slug):
    """Validate config and secrets of SLUG, or of every tenant. Exit 1 on any problem;
    warnings (routes a module left undeclared, say) alone exit 0."""
    report = _refusing(check_tenants, _home(ctx), [slug] if slug else None)
    for name, check in report.items():
        for problem in check.problems:
            click.echo(f"{name}: {problem}")
        for warning in check.warnings:
            click.echo(f"{name}: warning: {warning}")
        if not check.problems:
            click.echo(f"{name}: ok")
    if any(check.problems for check in report.values()):
        sys.exit(1)


@_tenant_command("disable")
def tenants_disable(ctx, slug):
    """Disable SLUG: it answers 404 like an unknown tenant."""
    _refusing(set_enabled, _home(ctx), slug, False)
    click.echo(f"disabled tenant {slug}")


@_tenant_command("enable")
def tenants_enable(ctx, slug):
    """Enable SLUG again."""
    _refusing(set_enabled, _home(ctx), slug, True)
    click.echo(f"enabled tenant {slug}")


@_tenant_command("down")
@click.option(
    "--retry-after",
    default=DEFAULT_RETRY_AFTER,
    show_default=True,
    type=click.IntRange(1, 86400),
    help="Seconds clients are told to wait (Retry-After).",
)
def tenants_down(ctx, slug, retry_after):
    """Take SLUG down for maintenance: every route answers 503.

    Every worker of a running server sees it within 2 seconds; `up` ends it."""
    _refusing(set_maintenance, _home(ctx), slug, retry_after)
    click.echo(f"tenant {slug} is down for maintenance (Retry-After: {retry_after})")


@_tenant_command("up")
def tenants_up(ctx, slug):
    """Bring SLUG back from maintenance."""
    _refusing(set_maintenance, _home(ctx), slug, None)
    click.echo(f"tenant {slug} is up")


@_tenant_command("backup")
@click.option(
    "--out",
    type=click.Path(dir_okay=True),
    help="Archive file, or folder for the default name SLUG-<UTC time>.tar.gz (default: .).",
)
@click.option("--no-files", is_flag=True, help="Leave the stored files out.")
def tenants_backup(ctx, slug, out, no_files):
    """Write one archive of SLUG: config, .env, database and files; prints its path.

    The tenant's writes answer 503 while it runs; reads go on. The archive appears
    under its name only once it is complete, readable by its owner only."""
    path = _refusing(backup_tenant, _home(ctx), slug, out, files=not no_files)
    click.echo(path)


@_tenant_command("backups")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def tenants_backups(ctx, slug, as_json):
    """List SLUG's scheduled backups (BACKUP_EVERY), oldest first: name, size, where.

    `tenants restore NAME` takes a listed name as well as a path."""
    found = _refusing(list_backups, _home(ctx), slug)
    if as_json:
        click.echo(json.dumps([vars(stored) for stored in found]))
        return
    if not found:
        click.echo(f"{slug} has no scheduled backups (set BACKUP_EVERY in config/{slug}.py)")
    for stored in found:
        click.echo(f"{stored.name}  {stored.size:>12}  {stored.where}")


@tenants.command("verify")
@click.argument("archive", type=click.Path(dir_okay=False))
def tenants_verify(archive):
    """Check ARCHIVE's manifest and every member's sha256; exit 1 naming the first bad one.

    Touches no tenant."""
    manifest = _refusing(verify_archive, archive)
    revisions = manifest.get("revisions")
    revision = revisions.get("alembic_version") if isinstance(revisions, dict) else None
    files = "" if manifest.get("files") else ", no files: made with --no-files"
    click.echo(
        f"{archive}: ok (tenant {manifest.get('slug')}, {len(manifest['members'])} members, "
        f"database revision {revision}, made {manifest.get('created')}{files})"
    )


@tenants.command("restore")
@click.argument("archive")
@click.option("--as", "as_slug", help="Restore as a copy under this slug, with a fresh key.")
@click.option("--force", is_flag=True, help="Replace the existing tenant (atomically).")
@click.option(
    "--discard-files",
    is_flag=True,
    help="With --force and an archive made with --no-files: the tenant's files go.",
)
@click.pass_context
def tenants_restore(ctx, archive, as_slug, force, discard_files):
    """Recreate a tenant from ARCHIVE (a file, or a name `tenants backups` lists), after
    checking every member.

    An older database revision is migrated forward; a newer one is refused. With
    --force, the tenant there keeps serving until the restored one is complete."""
    home = _home(ctx, creating=True)
    restored = _refusing(
        restore_tenant, home, archive, as_slug=as_slug, force=force, discard_files=discard_files
    )
    for note in restored.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"restored tenant {restored.slug} ({restored.users} users, {restored.files} files)")


@tenants.command("clone")
@click.argument("source")
@click.argument("new")
@click.pass_context
def tenants_clone(ctx, source, new):
    """Create tenant NEW as a copy of SOURCE (config, users, files, datasets) with a
    fresh SECRET_KEY."""
    copied = _refusing(clone_tenant, _home(ctx), source, new)
    for note in copied.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"cloned {source} as {new} ({copied.users} users, {copied.files} files)")


@_tenant_command("delete")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@click.option("--no-backup", is_flag=True, help="Do not keep an archive in tenants/.trash/.")
def tenants_delete(ctx, slug, yes, no_backup):
    """Remove SLUG: config module, instance folder, database or schema.

    An archive of it is kept in tenants/.trash/ first (unless --no-backup); if that
    fails, nothing is removed. Asks on a terminal; --yes for scripts."""
    home = _home(ctx)
    _refusing(require_tenant, home, slug)
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(f"deleting {slug} needs --yes when there is no terminal to ask")
        kept = "" if no_backup else " (an archive is kept in tenants/.trash/)"
        click.confirm(f"Delete tenant {slug} and all its data{kept}?", abort=True)
    archive = _refusing(delete_tenant, home, slug, keep_backup=not no_backup)
    click.echo(f"deleted tenant {slug}" + (f"; its archive: {archive}" if archive else ""))


@_tenant_command("rotate-secret")
def tenants_rotate_secret(ctx, slug):
    """Give SLUG a new SECRET_KEY; all of its tokens stop working."""
    _refusing(rotate_secret, _home(ctx), slug)
    click.echo(f"rotated the secret key of tenant {slug}")


@main.group()
def users() -> None:
    """Add, list, change and delete a tenant's users."""


@users.command("add")
@click.argument("slug")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.pass_context
def users_add(ctx, slug, username, role, password_stdin):
    """Create USERNAME in tenant SLUG.

    The password is prompted twice without echo, or read from stdin's first line."""
    home = _home(ctx)
    _refusing(require_tenant, home, slug)
    password = _read_password(password_stdin)
    _refusing(add_user, home, slug, username, password, role)
    click.echo(f"added {role} {username} to tenant {slug}")


@users.command("list")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def users_list(ctx, slug, as_json):
    """List the users of tenant SLUG: username, roles, active. Writes nothing."""
    home = _home(ctx)
    rows = _refusing(users_of, home, slug)
    if not rows and not tenant_database(home, slug, read_only=True).exists():
        click.echo(f"tenant {slug} has no database yet: no users", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "active" if row["active"] else "disabled"
        click.echo(f"{row['username']}\t{','.join(row['roles'])}\t{state}")


def _user_command(name: str):
    """``users NAME SLUG USERNAME [...]``: the command's function gets (ctx, slug,
    username, ...)."""

    def decorate(function):
        function = click.pass_context(function)
        return users.command(name)(click.argument("slug")(click.argument("username")(function)))

    return decorate


def _change_user(ctx, slug: str, username: str, done: str, read_password=None, **changes) -> None:
    """Apply ``changes`` (change_user's keywords) to a user, then say ``done`` (formatted
    with ``user``). The operator may stop even the last admin (a stolen account must be
    stoppable); this command can always enable it again."""
    lone = _refusing(
        change_user, _home(ctx), slug, username, False, read_password=read_password, **changes
    )
    click.echo(done.format(user=f"user {username} of tenant {slug}"))
    if lone:
        click.echo(f"note: tenant {slug} has no active admin now", err=True)


@_user_command("disable")
def users_disable(ctx, slug, username):
    """Disable USERNAME of tenant SLUG and end its tokens.

    It cannot log in until enabled again; the tokens it had stay dead even then."""
    _change_user(ctx, slug, username, "disabled {user}", active=False)


@_user_command("enable")
def users_enable(ctx, slug, username):
    """Enable USERNAME of tenant SLUG again."""
    _change_user(ctx, slug, username, "enabled {user}", active=True)


@_user_command("delete")
def users_delete(ctx, slug, username):
    """Delete USERNAME of tenant SLUG: its tokens stop working within a second."""
    _change_user(ctx, slug, username, "deleted {user}", delete=True)


@_user_command("role")
@click.argument("role", type=click.Choice(ROLES))
def users_role(ctx, slug, username, role):
    """Make USERNAME of tenant SLUG an admin or a plain user."""
    _change_user(ctx, slug, username, f"{{user}} now has the role {role}", roles=[role])


@_user_command("passwd")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
def users_passwd(ctx, slug, username, password_stdin):
    """Set a new password for USERNAME of tenant SLUG.

    The user's tokens end, and a lock-out is lifted."""
    _change_user(
        ctx,
        slug,
        username,
        "set the password of {user}",
        read_password=lambda: _read_password(password_stdin),
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@main.group()
def jobs() -> None:
    """List, show, cancel and retry a tenant's background jobs."""


@jobs.command("list")
@click.argument("slug")
@click.option("--state", type=click.Choice(JOB_STATES), help="Only jobs in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs_list(ctx, slug, state, as_json):
    home = _home(ctx)
    page, total = _refusing(tenant_jobs, home, slug).list(state, limit=1000)
    if as_json:
        click.echo(json.dumps({"data": page, "total": total}, indent=2))
        return
    for job in page:
        click.echo(
            f"{job['id']}  {job['state']:<9}  {job['module']}.{job['name']}  {job['enqueued']}"
        )


@jobs.command("show")
@click.argument("slug")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs_show(ctx, slug, job_id, as_json):
    job = _refusing(tenant_jobs, _home(ctx), slug).get(job_id)
    if job is None:
        raise InputError(f"{slug} has no job {job_id}")
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    for key, value in job.items():
        click.echo(f"{key}: {_printable(value)}")


@jobs.command("cancel")
@click.argument("slug")
@click.argument("job_id")
@click.pass_context
def jobs_cancel(ctx, slug, job_id):
    outcome = _refusing(cancel_job, _home(ctx), slug, job_id)
    click.echo(f"job {job_id}: " + ("cancelled" if outcome == "cancelled" else "asked to stop"))


@jobs.command("retry")
@click.argument("slug")
@click.argument("job_id")
@click.pass_context
def jobs_retry(ctx, slug, job_id):
    new_id = _refusing(retry_job, _home(ctx), slug, job_id)
    click.echo(f"job {job_id} queued again as {new_id}")


@main.command()
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--verify", is_flag=True, help="Check the hash chain; exit 1 where it breaks.")
@click.option(
    "--expect-head",
    metavar="HASH",
    help="With --verify: a head printed by an earlier run, which the chain must still pass.",
)
@click.pass_context
def audit(ctx, slug, as_json, verify, expect_head):
    """List the audit log of tenant SLUG, oldest first: id, time, actor, action, target,
    outcome, request id, client address. Writes nothing.

    With --verify, walk the hash chain instead: exit 1 naming the first entry that was
    edited, or that follows a deleted or inserted one (or if the log is gone, or cannot
    be read); 0 when it holds. It prints the head hash: keep it, and pass it back with
    --expect-head, to tell a log cut short or rewritten from some entry to its end."""
    home = _home(ctx)
    _refusing(require_tenant, home, slug)
    if expect_head is not None and not verify:
        raise InputError("--expect-head goes with --verify")
    database = tenant_database(home, slug, read_only=True)
    try:
        present = audit_log.has_log(database)
        if verify:
            verdict = audit_log.verify(database, expect_head) if present else audit_log.Verdict(0)
            _report_verdict(slug, verdict, as_json)
            return
        entries = [entry.as_dict() for entry in audit_log.all_entries(database)] if present else []
    except (SQLAlchemyError, audit_log.LogMissing) as exc:
        raise click.ClickException(
            f"the audit log of {slug} cannot be read: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        database.dispose()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        click.echo("\t".join(_printable(entry[name]) for name in audit_log.ENTRY_FIELDS))


def _report_verdict(slug: str, verdict, as_json: bool) -> None:
    """Print what ``tenantry audit --verify`` found; exit 1 if the chain does not hold."""
    if as_json:
        click.echo(json.dumps({"slug": slug, **dataclasses.asdict(verdict)}, indent=2))
        if not verdict.holds:
            sys.exit(1)
        return
    if verdict.broken is not None:
        raise click.ClickException(
            f"audit log of {slug}: entry {verdict.broken} breaks the chain: {verdict.reason} "
            f"(the {verdict.entries} entries before it hold)"
        )
    if not verdict.holds:
        raise click.ClickException(f"audit log of {slug}: {verdict.reason}")
    click.echo(
        f"audit log of {slug}: {verdict.entries} entries, the chain holds (head {verdict.head})"
    )


def _printable(value) -> str:
    """A value for one tab-separated line: control characters escaped, None as ``-``."""
    if value is None:
        return "-"
    return "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode()
        for char in str(value)
    )


@main.command()
@click.argument("slug", required=False)
@click.pass_context
def migrate(ctx, slug):
    """Bring SLUG's database, or every tenant's, to the current schema."""
    revisions = _refusing(migrate_tenants, _home(ctx), [slug] if slug else None)
    _report_per_tenant(revisions, lambda revision: f"at revision {revision}")


@main.command()
@click.argument("slug", required=False)
@click.pass_context
def gc(ctx, slug):
    """Remove expired snapshots and zips, and dead uploads, now.

    Of SLUG, or of every tenant (and what killed restores left); the server does it on
    its own every few minutes."""
    home = _home(ctx)
    results = _refusing(collect_garbage, home, [slug] if slug else None)
    if not slug:
        left = remove_leftovers(home)
        if left:
            click.echo(f"removed {left} left-overs of killed restores or clones")
    _report_per_tenant(results, lambda removed: f"removed {removed} files")


def _report_per_tenant(results: dict, done) -> None:
    """One line per tenant: what ``done`` says of its result, or its failure (a
    ``"failed: ..."`` string, on stderr). Exit 1 if any failed."""
    failed = False
    for name, result in results.items():
        if isinstance(result, str) and result.startswith("failed"):
            failed = True
            click.echo(f"{name}: {result}", err=True)
        else:
            click.echo(f"{name}: {done(result)}")
    if failed:
        sys.exit(1)


@main.group()
def operators() -> None:
    """Add, list, change and delete the home's operators (the platform API and console)."""


@operators.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.option("--read-only", is_flag=True, help="It may look, never change.")
@click.pass_context
def operators_add(ctx, name, password_stdin, read_only):
    """Add operator NAME (its password prompted twice, or read from stdin)."""
    store = Operators(_home(ctx))
    _refusing(check_operator_name, name)  # refused before the password is asked for
    if store.get(name) is not None:
        raise InputError(f"operator {name!r} exists")
    _refusing(store.add, name, _read_password(password_stdin), read_only)
    click.echo(f"added {'read-only ' if read_only else ''}operator {name}")


@operators.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def operators_list(ctx, as_json):
    """List operators: name, read-only or not, active or disabled."""
    rows = [operator.as_dict() for operator in _refusing(Operators(_home(ctx)).list)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        access = "read-only" if row["read_only"] else "read-write"
        state = "active" if row["active"] else "disabled"
        click.echo(f"{row['name']}\t{access}\t{state}\tsince {row['created']}")


@operators.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.pass_context
def operators_passwd(ctx, name, password_stdin):
    """Set a new password for NAME: its tokens end, a lock-out is lifted."""
    store = Operators(_home(ctx))
    if store.get(name) is None:
        raise InputError(f"no operator named {name!r}")
    _refusing(store.set_password, name, _read_password(password_stdin))
    click.echo(f"set the password of operator {name}")


@operators.command("disable")
@click.argument("name")
@click.pass_context
def operators_disable(ctx, name):
    """Disable NAME: its tokens end at once; it cannot sign in."""
    _refusing(Operators(_home(ctx)).set_active, name, False)
    click.echo(f"disabled operator {name}")


@operators.command("enable")
@click.argument("name")
@click.pass_context
def operators_enable(ctx, name):
    """Enable NAME again."""
    _refusing(Operators(_home(ctx)).set_active, name, True)
    click.echo(f"enabled operator {name}")


@operators.command("delete")
@click.argument("name")
@click.pass_context
def operators_delete(ctx, name):
    """Delete NAME: its tokens end at once."""
    _refusing(Operators(_home(ctx)).delete, name)
    click.echo(f"deleted operator {name}")


@main.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--metrics-bind",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics (summed over the workers) at http://HOST:PORT/metrics.",
)
@click.option(
    "--jobs",
    "jobs_concurrency",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Background jobs run at once by the server's own job runner.",
)
@click.option("--no-jobs", is_flag=True, help="Run no jobs here (run `tenantry worker`s).")
@click.option(
    "--admin-bind",
    metavar="HOST:PORT",
    help="Serve the platform API (/api/) and the operator console (/) on this address only.",
)
@click.pass_context
def serve(ctx, bind, workers, metrics_bind, jobs_concurrency, no_jobs, admin_bind):
    """Serve every tenant with gunicorn, and run their background jobs."""
    home = _home(ctx)
    hooks: list[str] = []  # gunicorn's --config of tenantry's hooks, when any is needed
    binds, application = ["--bind", bind], "tenantry.wsgi:application"
    os.environ.pop(ADMIN_BIND_ENV_VAR, None)
    try:
        server_settings()
        check_bucket()
        _refusing(check_place, home.tenants_dir)
        if admin_bind:
            admin_address(admin_bind)  # :raises ValueError: not an address here
            if admin_bind == bind:
                raise ValueError("--admin-bind must be another address than --bind")
            if not Operators(home).any():
                click.echo(
                    "note: the home has no operator yet: add one with `tenantry operators add`",
                    err=True,
                )
            binds += ["--bind", admin_bind]
            os.environ[ADMIN_BIND_ENV_VAR] = admin_bind
            application = "tenantry.platform.app:application"  # both addresses
        if metrics_bind:
            hooks, environment = metrics_setup(metrics_bind)
            os.environ.update(environment)
        os.environ.pop(SERVE_JOBS_ENV_VAR, None)
        if not no_jobs:
            jobs_hooks, environment = jobs_setup(jobs_concurrency)
            hooks = hooks or jobs_hooks
            os.environ.update(environment)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    os.environ[HOME_ENV_VAR] = str(home.root)
    argv = [
        sys.executable, "-m", "gunicorn",
        *binds,
        *gunicorn_options(workers),
        *hooks,
        application,
    ]  # fmt: skip
    os.execv(sys.executable, argv)


@main.command()
@click.option(
    "--concurrency",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs run at once by this worker (each in a process of its own).",
)
@click.pass_context
def worker(ctx, concurrency):
    """Run the tenants' background jobs (until SIGTERM: running jobs finish first)."""
    home = _home(ctx)
    _refusing(check_place, home.tenants_dir)
    runner = JobRunner(home, concurrency=concurrency)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    runner.run()


@main.group()
def new() -> None:
    """Make a new endpoint module (needs no home)."""


@new.command("module")
@click.argument("name")
@click.option(
    "--dir",
    "target",
    type=click.Path(),
    help="Folder to make it in: new, or empty (default: ./tenantry-NAME).",
)
def new_module_command(name, target):
    """Make the package of NAME, a new endpoint module (e.g. inventory): a route, its
    table, migration, setting and seed, and its own tests, which pass once it is installed."""
    try:
        made = new_module(name, target)
    except ScaffoldError as exc:
        raise _ended_by(exc) from exc
    except OSError as exc:
        raise click.ClickException(f"could not make the package: {exc}") from exc
    shown = _relative(made)
    click.echo(f"made the endpoint module {name} in {shown}:")
    for path in sorted(path for path in made.rglob("*") if path.is_file()):
        click.echo(f"  {path.relative_to(made)}")
    click.echo("next:")
    click.echo(f"  pip install -e {shlex.quote(shown)}")
    click.echo(f"  pytest {shlex.quote(shown)}")
    click.echo(f"  tenantry tenants create shop --blueprints landing,{name}")


def _relative(path) -> str:
    """``path`` as the user would type it here: relative below the current folder."""
    try:
        return str(path.relative_to(os.getcwd()))
    except ValueError:
        return str(path)


main.add_command(client_cli)


if __name__ == "__main__":
    main()
