"""Removing a tenant, after an archive of it in ``tenants/.trash/``."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from tenantry.data.db import schema_name
from tenantry.home.hosts import HostIndex
from tenantry.home.layout import TenantHome
from tenantry.ops.backup import default_archive_name, write_backup
from tenantry.ops.errors import OperationFailed, failure_reason
from tenantry.ops.hold import operation_lock, require_tenant, writes_held
from tenantry.ops.jobs import drop_jobs
from tenantry.ops.staging import TRASH, Staging, drop_schema, objects_of
from tenantry.storage.errors import ObjectStoreError
from tenantry.support.atomic import PRIVATE_DIR


def delete_tenant(home: TenantHome, slug: str, keep_backup: bool = True):
    """Remove the tenant (config module, instance folder, database or schema, host index
    entry), after an archive of it in ``tenants/.trash/`` (returned) unless
    ``keep_backup`` is False; if that backup fails, nothing is removed.

    :raises UnknownTenant: :raises OperationFailed: the backup failed.
    """
    require_tenant(home, slug)
    home.check_backend()
    return delete(home, slug, keep_backup)


def delete(home: TenantHome, slug: str, keep_backup: bool = True) -> Path | None:
    """Remove the tenant: its config module (the server lets go of it within 1 s), its
    instance folder and its database or schema; first, unless ``keep_backup`` is False,
    an archive of it in ``tenants/.trash/`` (returned). A failed backup removes nothing,
    and neither does a schema that cannot be dropped. Writes are held throughout.

    :raises OperationFailed: the backup failed, or the schema could not be dropped.
    """

    archive = None
    instance = home.instance_dir(slug)
    with operation_lock(home, slug), writes_held(home, slug):  # one hold: backup to removal
        if keep_backup:
            trash = home.tenants_dir / TRASH
            trash.mkdir(mode=PRIVATE_DIR, exist_ok=True)
            archive = _free_name(trash, default_archive_name(slug))
            write_backup(home, slug, archive, with_files=True, hold=False)
        with Staging.create(home, slug, kind="delete") as staging:
            # Out of sight in two renames (gc finishes a delete killed after the first)
            os.rename(home.config_file(slug), staging.folder / "config.py")
            moved = instance.exists()
            if moved:
                os.rename(instance, staging.folder / "old")
            try:
                if home.database_url:
                    drop_schema(home, schema_name(slug))
            except SQLAlchemyError as exc:
                if moved:
                    os.rename(staging.folder / "old", instance)
                os.rename(staging.folder / "config.py", home.config_file(slug))
                raise OperationFailed(
                    f"dropping the schema of {slug} failed ({failure_reason(exc)}): "
                    "nothing was removed"
                ) from None
        HostIndex(home).refresh()
        _drop_objects(home, slug)
        drop_jobs(home, slug)
    return archive


def _drop_objects(home: TenantHome, slug: str) -> None:
    """Object storage: the deleted tenant's objects go too (its archive, if kept, has
    them). :raises OperationFailed: the store refused (the tenant is gone; its objects
    stay until a delete or restore of the slug removes them)."""
    objects = objects_of(home, slug)
    if objects is None:
        return
    try:
        objects.drop_everything()
    except ObjectStoreError as exc:
        raise OperationFailed(
            f"{slug} is deleted, but removing its files from the object store failed ({exc}); "
            f"they stay under {objects.prefix}"
        ) from None


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or with -2, -3, ... before the extension if that is taken."""
    stem, dot, rest = name.partition(".")
    candidate, number = folder / name, 1
    while candidate.exists():
        number += 1
        candidate = folder / f"{stem}-{number}{dot}{rest}"
    return candidate
