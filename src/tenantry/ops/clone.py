"""A new tenant as a copy of another, from one snapshot of it, with a fresh SECRET_KEY."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from tenantry.config import is_valid_slug
from tenantry.data.db import TenantDatabase, tenant_database
from tenantry.home.env import with_new_secret_key
from tenantry.home.layout import TenantHome
from tenantry.ops.errors import OperationFailed, OperationRefused
from tenantry.ops.hold import operation_lock, require_tenant, writes_held
from tenantry.ops.restore import (
    Restored,
    build_aside,
    forget_unmade,
    migrate_and_load,
    require_new_slot,
    sweep_after,
)
from tenantry.ops.rows import SKIPPED_TABLES, count_rows
from tenantry.ops.snapshot import Snapshot, snapshot_of
from tenantry.ops.staging import Staging, link_blob, objects_of
from tenantry.storage.errors import ObjectStoreError
from tenantry.storage.local import TenantStorage
from tenantry.storage.objects import TenantObjects, tenant_storage
from tenantry.support.atomic import PRIVATE_DIR, PRIVATE_FILE


def clone_tenant(home: TenantHome, source: str, new: str):
    """A new tenant ``new`` with ``source``'s config, users, files and datasets and a
    fresh SECRET_KEY; returns what was copied.

    :raises UnknownTenant: :raises TenantError: ``new`` is invalid or exists.
    """
    require_tenant(home, source)
    home.check_backend()
    return clone(home, source, new)


def clone(home: TenantHome, source: str, new: str) -> Restored:
    """A new tenant ``new`` with ``source``'s config, users, files and datasets and a fresh
    SECRET_KEY. ``source``'s writes are held only while its data is read; the files are
    hard links of its blobs (copied where the disk cannot link). On SQLite the database
    file is copied as it is (no migration runs); on PostgreSQL its rows are.

    :raises OperationRefused: ``new`` is invalid or exists. :raises OperationFailed:
    """
    if not is_valid_slug(new):
        raise OperationRefused(f"invalid slug {new!r}")
    require_new_slot(home, new, hint="")
    config_text = home.config_file(source).read_text()
    env_text = with_new_secret_key(home.env_file(source).read_text())
    with operation_lock(home, new), Staging.create(home, new) as staging:
        require_new_slot(home, new, hint="")  # again: no other operation can take it now
        try:
            storage = TenantStorage(staging.tenant / "storage")
            storage.ensure()
            objects = objects_of(home, new)
            try:
                if home.database_url:
                    with snapshot_of(home, source) as snapshot:
                        for sha256 in snapshot.blobs:
                            if objects is not None:
                                snapshot.copy_blob_into(sha256, objects)
                            else:
                                snapshot.copy_blob(sha256, storage.blobs / sha256)
                        tables = _tables_from(snapshot, staging.folder / ".tables")
                    fill = functools.partial(
                        migrate_and_load,
                        tables=tables,
                        revisions=snapshot.revisions,
                        sequences=snapshot.sequences,
                    )
                else:
                    _copy_sqlite_tenant(home, source, staging, objects)
                    fill = _finish_copy
            except FileNotFoundError as exc:
                raise OperationFailed(
                    f"the bytes of a file of {source} are missing: {exc}"
                ) from None
            except ObjectStoreError as exc:
                raise OperationFailed(f"copying the files of {source} failed: {exc}") from None
            recorded = ("tenant.clone", source)
            result = build_aside(
                home, staging, new, source, config_text, env_text, fill, False, recorded
            )
        except BaseException:
            forget_unmade(home, new)
            raise
    database = tenant_database(home, new)
    try:
        result.files = count_rows(database, "stored_files")
    finally:
        database.dispose()
    sweep_after(home, new)
    return result


def _tables_from(snapshot: Snapshot, folder: Path) -> list[tuple[str, Path]]:
    folder.mkdir(mode=PRIVATE_DIR)
    tables = []
    for name, spool, _entry in snapshot.tables:
        with open(folder / f"{name}.jsonl", "wb") as out:
            shutil.copyfileobj(spool, out, 1024 * 1024)
        tables.append((name, folder / f"{name}.jsonl"))
    return tables


def _copy_sqlite_tenant(
    home: TenantHome, slug: str, staging: Staging, objects: TenantObjects | None
) -> None:
    """Copy the tenant's SQLite database as it is (SQLite's online backup: one moment)
    and link its blobs (in the object store: copy them on its side to ``objects``, the new
    tenant's), under its storage lock and with its writes held."""
    storage = tenant_storage(home.instance_dir(slug) / "storage", slug)
    blobs = staging.tenant / "storage" / ".blobs"
    target = staging.tenant / "tenant.db"
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    with operation_lock(home, slug), writes_held(home, slug), storage.lock():
        source = sqlite3.connect(home.database_file(slug), timeout=30)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            query = "SELECT name, sha256, size FROM stored_files"
            for name, sha256, size in copy.execute(query):
                if objects is None:
                    link_blob(storage.stored_path(name, sha256), blobs / sha256)
                else:
                    storage.copy_blob_to(objects, sha256, size)
        finally:
            source.close()
            copy.close()


def _finish_copy(database: TenantDatabase, modules: tuple) -> None:
    """Drop from a copied database what a copy does not carry; bring it up to date."""

    with database.engine.begin() as connection:
        for table in sorted(SKIPPED_TABLES):
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (our names)
        connection.execute(
            text("DELETE FROM revoked_tokens WHERE expires_at <= :now"), {"now": time.time()}
        )
    database.ensure_current(modules)
