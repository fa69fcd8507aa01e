"""Operations on tenants as files: create, enable, disable, rotate a secret, check, migrate.

The CLI is a thin layer over these; tests call them directly. Every write is atomic (a temp
file renamed into place), so a running server never sees half a tenant.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import re
import shutil
import stat
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from tenantry import audit
from tenantry.atomic import write_atomically
from tenantry.config import (
    ALL_BLUEPRINTS,
    TenantConfig,
    TenantConfigError,
    config_class_problems,
    enabled_blueprints,
    is_valid_slug,
    module_settings,
    tenant_modules,
    tenant_settings,
)
from tenantry.config_loader import load_config_class
from tenantry.db import TenantDatabase, schema_name, tenant_database
from tenantry.endpoint import Tenant
from tenantry.home import TenantHome
from tenantry.hosts import HostIndex
from tenantry.modules import (
    SETTING_NAME,
    EndpointModule,
    canonical_blueprints,
    check_routes,
    module_problems,
    ordered_blueprints,
    resolve_modules,
    undeclared_notes,
)
from tenantry.objects import storage_location_from_environ, tenant_storage
from tenantry.storage import PRIVATE_DIR, PRIVATE_FILE, TenantStorage
from tenantry.tenant_secrets import new_secret_key, read_secrets, write_new_secret_key

# `migrate` of many tenants runs in this many processes, a chunk of tenants at a time.
MIGRATE_WORKERS = 4
PARALLEL_MIGRATION_THRESHOLD = 8
MAX_CHUNK = 16
HOST_PATTERN = re.compile(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)

log = logging.getLogger(__name__)

WSGI_MODULE = '''"""Tenant {slug} alone, at /: gunicorn --chdir tenants/{slug} wsgi:application"""

from pathlib import Path

from tenantry.wsgi import tenant_application

application = tenant_application(Path(__file__).resolve().parent)
'''

CONFIG_MODULE = """from tenantry.config import TenantConfig


class {class_name}(TenantConfig):
    SLUG = {slug}
    NAME = {name}
    HOSTS = {hosts}
    BLUEPRINTS = {blueprints}
"""


class TenantError(Exception):
    """A tenant operation was refused; nothing was written."""


class UnknownTenant(TenantError):
    def __init__(self, slug: str):
        super().__init__(f"no tenant named {slug!r}")


class OperationFailed(Exception):
    """A backup, verify, restore, clone or delete failed (a bad archive, a failing write);
    no tenant was changed."""


def _record(home: TenantHome, slug: str, action: str, target: str | None = None) -> None:
    """Record an operator's action, once done, in the tenant's audit log (``target``: the
    slug by default): the log never holds an action that did not happen. The work stands
    if the entry cannot be written — an operator must be able to act when the log cannot
    take it (its database down, lost, not answering, or not yet migrated: `down`,
    `disable` and `rotate-secret` are for such times) —; a warning then says the action is
    not in the log. Nothing is created or migrated here, and the entry waits for the
    database at most about :data:`AUDIT_WAIT` seconds.
    """
    database = tenant_database(home, slug)
    try:
        reason = _entry_refused(database, action, target or slug)
    finally:
        database.dispose()
    if reason is not None:
        log.warning("%s of %s is not in its audit log: %s", action, slug, reason)


AUDIT_WAIT = 10


def _entry_refused(database, action: str, target: str) -> str | None:
    """Record an operator's action; None, or why it could not be."""
    try:
        if not audit.has_log(database):
            return "its database has no audit log yet (`tenantry migrate` adds it)"
        with database.transaction() as session:
            if database.is_postgres:
                for setting in ("lock_timeout", "statement_timeout"):
                    session.execute(text(f"SET LOCAL {setting} = '{AUDIT_WAIT}s'"))
            audit.record(session, action, target)
    except (SQLAlchemyError, audit.LogMissing) as exc:
        return str(exc).splitlines()[0]
    return None


def _is_text(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8 (undecodable command-line bytes do not)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _literal(value: str | tuple[str, ...]) -> str:
    """Python source for a string or a tuple of strings, in the project's quote style."""
    if isinstance(value, str):
        return json.dumps(value)
    items = ", ".join(json.dumps(item) for item in value)
    return f"({items},)" if len(value) == 1 else f"({items})"


# What create_tenant's settings may not name, and why.
NOT_SETTINGS = {
    "SECRET_KEY": "a secret lives in the tenant's .env, never in its config module",
    "INSTANCE_PATH": "the platform sets it from the tenant's folder",
    "STORAGE_ROOT": "the platform sets it from the tenant's folder",
    "SESSION_COOKIE_NAME": "the platform names it after the tenant",
}


def _setting_literal_problems(settings: dict, attributes: dict) -> list[str]:
    """What keeps ``settings`` from being written into a config module as they are."""
    problems = []
    for key, value in settings.items():
        if not isinstance(key, str) or not SETTING_NAME.fullmatch(key) or key in attributes:
            problems.append(
                f"setting {key!r} must be an UPPER_CASE name other than {', '.join(attributes)}"
            )
            continue
        if key in NOT_SETTINGS:
            problems.append(f"{key} is not a setting: {NOT_SETTINGS[key]}")
            continue
        try:
            same = ast.literal_eval(repr(value)) == value
        except (ValueError, SyntaxError):
            same = False
        if not same:
            problems.append(f"setting {key} must be a Python literal, not {type(value).__name__}")
    return problems


def _class_name(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("-")) + "Config"


def require_tenant(home: TenantHome, slug: str) -> None:
    """:raises UnknownTenant: no tenant of that slug is configured."""
    if not home.exists(slug):
        raise UnknownTenant(slug)


def create_tenant(
    home: TenantHome,
    slug: str,
    name: str | None = None,
    hosts: tuple[str, ...] = (),
    blueprints: tuple[str, ...] = ALL_BLUEPRINTS,
    settings: Mapping[str, object] | None = None,
) -> None:
    """Write config/<slug>.py, tenants/<slug>/ (.env 0600, wsgi.py, storage/) and migrate
    its database, seeding its modules' tables. The config module is written last: the
    tenant exists once it is there. ``settings`` are more attributes of its config class
    (``{"NOTES_MAX_PER_USER": 10}``; literals only), which its modules' seeds see too.

    :raises TenantError: invalid or existing slug, invalid host, blueprint or setting;
        nothing written.
    """
    if not is_valid_slug(slug):
        raise TenantError(
            f"invalid slug {slug!r}: use 2-63 of a-z, 0-9 and '-', starting with a letter "
            "(not 'healthz')"
        )
    if home.config_file(slug).exists() or home.instance_dir(slug).exists():
        raise TenantError(f"tenant {slug!r} already exists")
    if name is not None and not _is_text(name):
        raise TenantError("the name must be valid text")
    hosts = tuple(host.lower() for host in hosts)
    for host in hosts:
        if not HOST_PATTERN.fullmatch(host):
            raise TenantError(f"invalid host {host!r}")
    problems = module_problems(blueprints)
    if problems:
        raise TenantError("; ".join(problems))
    blueprints = ordered_blueprints(blueprints)
    modules = resolve_modules(canonical_blueprints(blueprints))
    problems = check_routes(modules).problems
    if problems:
        raise TenantError("; ".join(problems))
    # The class config/<slug>.py will hold: checked now, seen by the modules' seeds.
    attributes = {"SLUG": slug, "NAME": name or slug, "HOSTS": hosts, "BLUEPRINTS": blueprints}
    settings = dict(settings or {})
    problems = _setting_literal_problems(settings, attributes)
    config_class = type(_class_name(slug), (TenantConfig,), {**attributes, **settings})
    if not problems:
        problems = config_class_problems(config_class, slug)
        problems += module_settings(config_class, modules)[1]
    if config_class.OPENAPI_STRICT is True:
        problems += undeclared_notes(check_routes(modules).undeclared, strict=True)
    if problems:
        raise TenantError("; ".join(problems))
    taken = _hosts_in_use(home).keys() & set(hosts)
    if taken:
        raise TenantError(f"host already used by another tenant: {', '.join(sorted(taken))}")
    home.check_backend()
    home.check_claim()
    if home.database_url and tenant_database(home, slug).exists():
        # A schema left behind by a removed tenant must not hand its users to a new one.
        raise TenantError(
            f"the database already holds schema {schema_name(slug)!r}, left by an earlier "
            f"tenant {slug!r}: drop it first, or choose another slug"
        )

    home.config_dir.mkdir(parents=True, exist_ok=True)
    home.tenants_dir.mkdir(parents=True, exist_ok=True)
    instance = home.instance_dir(slug)
    try:
        instance.mkdir(mode=PRIVATE_DIR)
    except FileExistsError:
        raise TenantError(f"tenant {slug!r} already exists") from None
    try:
        write_atomically(home.env_file(slug), f"SECRET_KEY={new_secret_key()}\n", 0o600)
        write_atomically(instance / "wsgi.py", WSGI_MODULE.format(slug=slug))
        TenantStorage(instance / "storage").ensure()
        upgrade_database(home, slug, modules, config_class)
        home.record_backend()
        config = CONFIG_MODULE.format(
            class_name=_class_name(slug),
            slug=_literal(slug),
            name=_literal(name or slug),
            hosts=_literal(hosts),
            blueprints=_literal(blueprints),
        )
        config += "".join(f"    {key} = {value!r}\n" for key, value in settings.items())
        write_atomically(home.config_file(slug), config)
    except BaseException:
        home.config_file(slug).unlink(missing_ok=True)
        shutil.rmtree(instance, ignore_errors=True)
        if home.database_url:  # the schema did not exist before: it is this attempt's
            with contextlib.suppress(Exception):
                tenant_database(home, slug).drop_schema()
        raise


def set_enabled(home: TenantHome, slug: str, enabled: bool) -> None:
    """Enable or disable a tenant; a disabled tenant answers 404 like an unknown one.

    :raises UnknownTenant:
    """
    require_tenant(home, slug)
    marker = home.disabled_marker(slug)
    if enabled:
        marker.unlink(missing_ok=True)
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    _record(home, slug, "tenant.enable" if enabled else "tenant.disable")


def set_maintenance(home: TenantHome, slug: str, retry_after: int | None) -> None:
    """Take the tenant down for maintenance (every route answers 503 with ``Retry-After:
    retry_after``), or with None bring it up again. Every worker sees it within 2 s.

    :raises UnknownTenant: :raises TenantError: ``retry_after`` is not 1-86400 seconds.
    """
    require_tenant(home, slug)
    marker = home.maintenance_marker(slug)
    if retry_after is None:
        marker.unlink(missing_ok=True)
        _record(home, slug, "tenant.up")
        return
    if isinstance(retry_after, bool) or not isinstance(retry_after, int):
        raise TenantError("retry-after must be a whole number of seconds")
    if not 1 <= retry_after <= 86400:
        raise TenantError("retry-after must be 1 to 86400 seconds")
    marker.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    write_atomically(marker, f"{retry_after}\n")
    _record(home, slug, "tenant.down")


def rotate_secret(home: TenantHome, slug: str) -> None:
    """Give the tenant a fresh SECRET_KEY, keeping the other lines of its .env.

    :raises UnknownTenant:
    """
    require_tenant(home, slug)
    write_new_secret_key(home, slug)
    _record(home, slug, "tenant.rotate_secret")


def describe_tenant(home: TenantHome, slug: str) -> dict:
    """slug, name, hosts, blueprints, enabled and maintenance of one tenant (plus
    ``error`` if broken)."""
    try:
        config_class = load_config_class(home, slug)
    except TenantConfigError as exc:
        return {
            "slug": slug,
            "name": None,
            "hosts": [],
            "blueprints": [],
            "enabled": home.is_enabled(slug),
            "maintenance": home.maintenance(slug) is not None,
            "error": "; ".join(exc.problems),
        }
    return {
        "slug": slug,
        "name": config_class.NAME or slug,
        "hosts": list(config_class.HOSTS),
        "blueprints": list(enabled_blueprints(config_class)),
        "enabled": home.is_enabled(slug),
        "maintenance": home.maintenance(slug) is not None,
    }


def tenant_stats(home: TenantHome, slug: str) -> dict:
    """What one tenant holds, read from its database without building its app and
    without writing: ``users``, ``files``, ``bytes`` (its stored files), ``quota_used``
    (every byte its quota counts: files, link snapshots and zips, uploads in progress),
    ``quota``, ``datasets``, ``audit_entries`` and ``last_activity`` (its newest audit
    entry's time). A count is None where the database has no such table yet (never
    migrated to it); ``error`` says why a tenant could not be read.
    """
    from tenantry.endpoints.datasets.models import Dataset
    from tenantry.endpoints.files.models import FileRecord, used_bytes
    from tenantry.users import User

    stats = {
        "slug": slug,
        "users": None,
        "files": None,
        "bytes": None,
        "quota_used": None,
        "quota": None,
        "datasets": None,
        "audit_entries": None,
        "last_activity": None,
    }
    try:
        stats["quota"] = load_config_class(home, slug).STORAGE_QUOTA
    except TenantConfigError as exc:
        stats["error"] = "; ".join(exc.problems)
    database = tenant_database(home, slug, read_only=True)
    try:
        if not database.exists():
            stats["error"] = "it has no database"
            return stats
        tables = database.table_names()
        entry = audit.AuditEntry
        counted = {
            "users": (User, func.count()),
            "files": (FileRecord, func.count()),
            "bytes": (FileRecord, func.coalesce(func.sum(FileRecord.size), 0)),
            "datasets": (Dataset, func.count()),
            "audit_entries": (entry, func.count()),
            "last_activity": (entry, func.max(entry.time)),
        }
        with database.transaction() as session:
            for key, (model, value) in counted.items():
                if model.__tablename__ in tables:
                    stats[key] = session.scalar(select(value).select_from(model))
            if stats["bytes"] is not None:
                stats["bytes"] = int(stats["bytes"])  # PostgreSQL sums to a Decimal
        if {"one_time_links", "upload_reservations"} <= tables:
            stats["quota_used"] = int(used_bytes(database))
    except SQLAlchemyError as exc:
        stats["error"] = f"its database cannot be read: {str(exc).splitlines()[0]}"
    finally:
        database.dispose()
    return stats


@dataclass
class TenantCheck:
    """What ``tenants check`` found for one tenant: ``problems`` keep it from serving (exit
    1), ``warnings`` do not (routes its modules left undeclared, say)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_tenants(home: TenantHome, slugs: list[str] | None = None) -> dict[str, TenantCheck]:
    """What is wrong with each tenant, or worth a word.

    Secrets and hosts are compared across all tenants even when ``slugs`` names a few.

    :raises UnknownTenant: a named slug is not configured.
    """
    every_slug = home.slugs()
    for slug in slugs or ():
        require_tenant(home, slug)
    report = {slug: _check_tenant(home, slug) for slug in (slugs or every_slug)}

    holders: dict[str, list[str]] = {}
    for slug in every_slug:
        key = read_secrets(home, slug).get("SECRET_KEY")
        if key:
            holders.setdefault(hashlib.sha256(key.encode()).hexdigest(), []).append(slug)
    for sharing in holders.values():
        for slug in sharing:
            if len(sharing) > 1 and slug in report:
                others = ", ".join(other for other in sharing if other != slug)
                report[slug].problems.append(f"SECRET_KEY is shared with {others}")
    for host, claimants in _hosts_in_use(home).items():
        for slug in claimants:
            if len(claimants) > 1 and slug in report:
                report[slug].problems.append(f"host {host} is also claimed by another tenant")
    return report


def _check_tenant(home: TenantHome, slug: str) -> TenantCheck:
    check = TenantCheck()
    if not home.env_file(slug).is_file():
        check.problems.append(f"tenants/{slug}/.env is missing")
    check.problems += _exposed_files(home, slug)
    try:
        config_class = load_config_class(home, slug)
        tenant_settings(config_class, read_secrets(home, slug), home.instance_dir(slug))
        routes = check_routes(tenant_modules(config_class))
    except TenantConfigError as exc:
        check.problems += exc.problems
        return check
    check.problems += routes.problems
    check.warnings += routes.warnings
    if config_class.OPENAPI_STRICT:
        check.problems += undeclared_notes(routes.undeclared, strict=True)
    else:
        check.warnings += undeclared_notes(routes.undeclared, strict=False)
    return check


# What holds secrets or tenant data: private (0600 files, 0700 folders).
PRIVATE_FILES = (".env", "tenant.db", "tenant.db-wal", "tenant.db-shm")


def _exposed_files(home: TenantHome, slug: str) -> list[str]:
    """Problems for files of the tenant's secrets or data that others may read: its
    instance folder, ``.env``, database, and everything under ``storage/``."""
    instance = home.instance_dir(slug)
    exposed = []

    def look(path, private_mode) -> None:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                exposed.append(
                    f"{os.path.relpath(path, home.root)} (mode {mode:o}, expected {private_mode:o})"
                )

    if not instance.is_dir():
        return []
    look(instance, PRIVATE_DIR)
    for name in PRIVATE_FILES:
        look(instance / name, PRIVATE_FILE)
    for folder, _folders, files in os.walk(instance / "storage"):
        look(folder, PRIVATE_DIR)
        for name in files:
            if name != ".lock":
                look(os.path.join(folder, name), PRIVATE_FILE)
    if not exposed:
        return []
    shown = "; ".join(exposed[:3]) + (f"; and {len(exposed) - 3} more" if len(exposed) > 3 else "")
    return [f"readable by others: {shown}; fix: chmod -R go-rwx {instance}"]


def _hosts_in_use(home: TenantHome) -> dict[str, list[str]]:
    """Every host some tenant claims, with the tenants claiming it."""
    index = HostIndex(home, persist=False)
    index.refresh()
    return index.claims


def migrate_tenants(home: TenantHome, slugs: list[str] | None = None) -> dict[str, str]:
    """Bring the named tenants' databases (default: all) to the current schema. One
    tenant's failure does not stop the others.

    :returns: each slug's schema revision afterwards, or ``"failed: <reason>"``.
    :raises UnknownTenant: a named slug is not configured.
    """
    for slug in slugs or ():
        require_tenant(home, slug)

    targets = slugs or home.slugs()
    if len(targets) < PARALLEL_MIGRATION_THRESHOLD:
        return {slug: _upgrade_or_reason(home, slug) for slug in targets}
    # Alembic keeps its migration context in module globals, so migrations run in parallel
    # in processes, not threads. Each holds two connections (its lock and its work).
    workers = min(MIGRATE_WORKERS, len(targets))
    chunks = max(1, min(MAX_CHUNK, len(targets) // (workers * 4)))
    spawn = multiprocessing.get_context("spawn")
    results = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
        revisions = pool.map(_upgrade_or_reason, itertools.repeat(home), targets, chunksize=chunks)
        try:
            for slug, revision in zip(targets, revisions, strict=False):
                results[slug] = revision
        except BrokenProcessPool:
            pass  # a migration process died (killed?): the tenants not reported failed
    for slug in targets:
        results.setdefault(slug, "failed: its migration process died; run migrate again")
    return results


def _upgrade_or_reason(home: TenantHome, slug: str) -> str:
    try:
        return upgrade_database(home, slug)
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"


def upgrade_database(
    home: TenantHome,
    slug: str,
    modules: tuple[EndpointModule, ...] | None = None,
    config_class: type[TenantConfig] | None = None,
) -> str:
    """Migrate one tenant's database to the current schema, with the tables of its
    endpoint modules (default: those its config names), seeding the tables it makes;
    returns its revision. ``config_class`` stands for the tenant's (``create`` has not
    written it yet).

    :raises TenantConfigError: its config cannot name its modules (the platform's schema
        is migrated all the same).
    """
    database = tenant_database(home, slug)
    try:
        try:
            config_class = config_class or load_config_class(home, slug)
            if modules is None:
                modules = tenant_modules(config_class)
            # Only a seed needs the tenant's settings (and so valid secrets).
            seeds = any(module.seed is not None for module in modules)
            tenant = _seeding_tenant(home, config_class, modules, database) if seeds else None
        except TenantConfigError:
            database.upgrade()
            raise
        return database.upgrade(modules, tenant)
    finally:
        database.dispose()


def _seeding_tenant(
    home: TenantHome,
    config_class: type[TenantConfig],
    modules: tuple[EndpointModule, ...],
    database: TenantDatabase,
) -> Tenant:
    """The tenant as an endpoint module's ``seed`` sees it outside a request."""
    slug = config_class.SLUG
    settings = tenant_settings(config_class, read_secrets(home, slug), home.instance_dir(slug))
    return Tenant(
        slug=slug,
        name=settings["NAME"],
        config=settings,
        database=database,
        storage=tenant_storage(settings["STORAGE_ROOT"], slug),
        modules=tuple(module.key for module in modules),
    )


def collect_garbage(home: TenantHome, slugs: list[str] | None = None) -> dict[str, int | str]:
    """Run the clean-up (``sweep``) of every enabled endpoint module of the named tenants
    (default: all) now: snapshots and zips of expired links, uploads that died. One
    tenant's failure does not stop the others.

    :returns: per tenant, how many files were removed, or ``"failed: <reason>"``.
    :raises UnknownTenant: a named slug is not configured.
    """
    for slug in slugs or ():
        require_tenant(home, slug)
    results: dict[str, int | str] = {}
    for slug in slugs or home.slugs():
        try:
            results[slug] = _sweep_tenant(home, slug)
        except Exception as exc:
            results[slug] = f"failed: {type(exc).__name__}: {exc}"
    return results


def remove_leftovers(home: TenantHome) -> int:
    """Remove what killed restores and clones left in ``tenants/`` (and their PostgreSQL
    schemas); returns how many. One that is still running is left alone."""
    from tenantry.backup import remove_stale_staging

    return remove_stale_staging(home)


def needs_sweeping(home: TenantHome, slug: str) -> bool:
    """Whether the tenant has anything a sweep could remove (one look at two folders), so
    that a home of idle tenants costs a few stats, not a database each."""
    if storage_location_from_environ() is not None:
        return True  # the store's snapshots and uploads: the database knows the links
    storage = TenantStorage(home.instance_dir(slug) / "storage")
    for folder in (storage.links, storage.incoming, storage.root / ".pins"):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            if next(entries, None) is not None:
                return True
    return False


def _sweep_tenant(home: TenantHome, slug: str) -> int:
    """The tenant's clean-up, unless an operation (a backup, restore, clone) runs on it: a
    restore's blobs, say, are in the store before any record names them. Then 0: the next
    sweep does it."""
    from tenantry.backup import OperationError, operation_lock, remove_stale_pins

    try:
        with operation_lock(home, slug, wait=0):
            removed = remove_stale_pins(home, slug)
            modules = tenant_modules(load_config_class(home, slug))
            sweepers = [module.sweep for module in modules if module.sweep is not None]
            if not sweepers:
                return removed
            storage = tenant_storage(home.instance_dir(slug) / "storage", slug)
            database = tenant_database(home, slug)
            try:
                database.ensure_current(modules)
                return removed + sum(sweep(database, storage) for sweep in sweepers)
            finally:
                database.dispose()
    except OperationError:
        return 0


# Backup, verify, restore, clone and delete (CONTRACT §12); the work is in tenantry.backup.


def backup_tenant(
    home: TenantHome, slug: str, out: str | os.PathLike[str] | None = None, files: bool = True
):
    """Write one archive of the tenant (default ``SLUG-<UTC>.tar.gz`` in the current
    folder, or in ``out`` if it is a folder); returns its path. The tenant's writes answer
    503 while it runs; reads go on.

    :raises UnknownTenant: :raises TenantError: the target exists, or another operation
        on the tenant runs. :raises OperationFailed: a write failed (no archive is left).
    """
    from tenantry import backup

    require_tenant(home, slug)
    home.check_backend()
    path = backup.backup(home, slug, out, with_files=files)
    _record(home, slug, "tenant.backup", Path(path).name)
    return path


def verify_archive(archive: str | os.PathLike[str]) -> dict:
    """Check an archive's manifest and every member's sha256; returns its manifest.

    :raises TenantError: it cannot be read. :raises OperationFailed: naming the first bad
        member.
    """
    from tenantry import backup

    return backup.verify(Path(archive))


def restore_tenant(
    home: TenantHome,
    archive: str | os.PathLike[str],
    as_slug: str | None = None,
    force: bool = False,
):
    """Recreate the tenant of ``archive`` (as ``as_slug``, with a fresh SECRET_KEY),
    replacing an existing one only with ``force`` (atomically). Returns what was restored
    (slug, users, files, notes).

    :raises TenantError: invalid slug, an existing tenant without ``force``, an unreadable
        file. :raises OperationFailed: the archive is damaged or newer than this tenantry;
        nothing changed.
    """
    from tenantry import backup

    home.check_backend()
    return backup.restore(home, Path(archive), as_slug, force)


def clone_tenant(home: TenantHome, source: str, new: str):
    """A new tenant ``new`` with ``source``'s config, users, files and datasets and a
    fresh SECRET_KEY; returns what was copied.

    :raises UnknownTenant: :raises TenantError: ``new`` is invalid or exists.
    """
    from tenantry import backup

    require_tenant(home, source)
    home.check_backend()
    return backup.clone(home, source, new)


def delete_tenant(home: TenantHome, slug: str, keep_backup: bool = True):
    """Remove the tenant (config module, instance folder, database or schema, host index
    entry), after an archive of it in ``tenants/.trash/`` (returned) unless
    ``keep_backup`` is False; if that backup fails, nothing is removed.

    :raises UnknownTenant: :raises OperationFailed: the backup failed.
    """
    from tenantry import backup

    require_tenant(home, slug)
    home.check_backend()
    return backup.delete(home, slug, keep_backup)
