"""The clean-up (``tenantry gc`` and the workers' sweeps): expired links, dead uploads,
stale pins, what killed operations left aside."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from tenantry.data.db import tenant_database
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.home.settings import tenant_modules
from tenantry.ops.errors import OperationRefused
from tenantry.ops.hold import operation_lock, require_tenant
from tenantry.ops.snapshot import PINS
from tenantry.ops.staging import (
    BUILDING_GRACE,
    BUILDING_PREFIX,
    STAGING_NAME,
    Staging,
    objects_of,
    recover,
)
from tenantry.storage.local import TenantStorage
from tenantry.storage.location import storage_location_from_environ
from tenantry.storage.objects import tenant_storage
from tenantry.support.locking import file_lock_if_free

log = logging.getLogger(__name__)


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
    return remove_stale_staging(home)


def needs_sweeping(home: TenantHome, slug: str) -> bool:
    """Whether the tenant has anything a sweep could remove (one look at two folders), so
    that a home of idle tenants costs a few stats, not a database each."""
    if storage_location_from_environ() is not None:
        return True  # the store's snapshots and uploads: the database knows the links
    storage = TenantStorage(home.instance_dir(slug) / "storage")
    for folder in (storage.links, storage.incoming, storage.root / PINS):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            if next(entries, None) is not None:
                return True
    return False


def _sweep_tenant(home: TenantHome, slug: str) -> int:
    """The tenant's clean-up, unless an operation (a backup, restore, clone) runs on it: a
    restore's blobs, say, are in the store before any record names them. Then 0: the next
    sweep does it."""
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
    except OperationRefused:
        return 0


def remove_stale_staging(home: TenantHome) -> int:
    """Finish or undo what killed restores, clones and deletes left in ``tenants/`` (once
    no process holds them); returns how many. A restore killed before its commit point
    is undone, after it finished; a delete is finished."""
    removed = 0
    if not home.tenants_dir.is_dir():
        return 0
    for entry in os.scandir(home.tenants_dir):
        try:
            if entry.name.startswith(BUILDING_PREFIX) and entry.is_dir():
                if time.time() - entry.stat().st_mtime > BUILDING_GRACE:
                    shutil.rmtree(entry.path)
                    removed += 1
            elif STAGING_NAME.fullmatch(entry.name) and entry.is_dir():
                staging = Staging(home, Path(entry.path))
                held = file_lock_if_free(staging.folder / ".lock")
                with operation_lock(home, staging.slug, wait=0), held as free:
                    if free:
                        recover(staging)
                        removed += 1
        except OperationRefused:
            pass  # an operation on that tenant runs: it is not stale
        except Exception:
            log.exception("removing %s failed", entry.name)
    return removed


def remove_stale_pins(home: TenantHome, slug: str) -> int:
    """Remove the pins of backups that did not end (killed); the caller holds the tenant's
    :func:`operation_lock` (no backup of it runs)."""
    pins = home.instance_dir(slug) / "storage" / PINS
    objects = objects_of(home, slug)
    removed = objects.drop_pins() if objects is not None else 0
    if pins.is_dir():
        for entry in os.scandir(pins):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed
