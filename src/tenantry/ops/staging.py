"""Where restores, clones and deletes build aside (a staging folder of ``tenants/`` and a
staging schema on PostgreSQL), and how what a killed one left is recovered or removed."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from tenantry.data.db import TenantDatabase, schema_name
from tenantry.home.layout import TenantHome
from tenantry.storage.local import link_or_copy
from tenantry.storage.objects import TenantObjects, tenant_storage
from tenantry.support.atomic import PRIVATE_DIR, PRIVATE_FILE, write_atomically
from tenantry.support.locking import file_lock_if_free

log = logging.getLogger(__name__)

# Folders of tenants/ where restores, clones and deletes work aside:
# ".restore-<slug>-<token>", ".delete-<slug>-<token>".
STAGING_NAME = re.compile(r"\.(restore|delete)-([a-z][a-z0-9-]{1,62})-([0-9a-f]{12})")
# In the folder a replacement built, naming its token: the folder is in place (committed).
COMMITTED = ".restore-committed"
# A staging folder before it is locked and named; gc removes one older than a minute.
BUILDING_PREFIX = ".building-"
BUILDING_GRACE = 60.0
# In a restored instance folder until its config module is written (a crash before that
# leaves a folder gc knows to remove).
RESTORING = ".restoring"
TRASH = ".trash"
# What a restore leaves free on the disk besides the archive's contents.
DISK_MARGIN = 64 * 1024 * 1024


class Staging:
    """A tenant built aside, in a folder of ``tenants/`` (``.restore-<slug>-<token>``, or
    ``.delete-...``) holding ``tenant/`` (the instance folder being built), the
    operation's lock and its journal; on PostgreSQL it names its schemas:
    ``tenantry_restore_<token>`` (the one being built) and ``tenantry_old_<token>`` (the
    one it replaced). While the lock is held, gc leaves it alone; once its process is
    gone, gc finishes or undoes what it left (:func:`tenantry.ops.gc.remove_stale_staging`)."""

    def __init__(self, home: TenantHome, folder: Path):
        match = STAGING_NAME.fullmatch(folder.name)
        if match is None:
            raise ValueError(f"not a staging folder: {folder.name}")
        self.home = home
        self.folder = folder
        self.kind, self.slug, self.token = match.groups()
        self.schema = f"tenantry_restore_{self.token}" if home.database_url else None
        self.old_schema = f"tenantry_old_{self.token}" if home.database_url else None
        self.keep = False  # True: it holds the only copy of a tenant (see tenantry.ops.swap)

    @property
    def tenant(self) -> Path:
        return self.folder / "tenant"

    @classmethod
    @contextlib.contextmanager
    def create(cls, home: TenantHome, slug: str, kind: str = "restore") -> Iterator[Staging]:
        """A fresh staging folder, removed (with its schemas) when the block ends. It is
        made under another name and renamed once its lock is held, so gc never sees it
        unheld while its process lives."""
        token = secrets.token_hex(6)
        home.tenants_dir.mkdir(parents=True, exist_ok=True)
        building = home.tenants_dir / f"{BUILDING_PREFIX}{kind}-{token}"
        building.mkdir(mode=PRIVATE_DIR)
        try:
            with file_lock_if_free(building / ".lock"):  # the lock goes with the rename
                (building / "tenant").mkdir(mode=PRIVATE_DIR)
                folder = home.tenants_dir / f".{kind}-{slug}-{token}"
                os.rename(building, folder)
                staging = cls(home, folder)
                try:
                    yield staging
                finally:
                    staging.remove()
        finally:
            shutil.rmtree(building, ignore_errors=True)

    def database(self, slug: str) -> TenantDatabase:
        return TenantDatabase(slug, self.tenant, self.home.database_url, schema=self.schema)

    def remove(self) -> None:
        for schema in (self.schema, self.old_schema):
            if schema:
                drop_schema(self.home, schema)
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)


def _schema(home: TenantHome, schema: str) -> TenantDatabase:
    """A PostgreSQL schema of the home by its name (a staging one, or a tenant's)."""
    return TenantDatabase(schema, home.tenants_dir, home.database_url, schema=schema)


def drop_schema(home: TenantHome, schema: str) -> None:
    _schema(home, schema).drop_schema()


def _schema_exists(home: TenantHome, schema: str) -> bool:
    return _schema(home, schema).exists()


def recover(staging: Staging) -> None:
    """Put things right after a process died holding ``staging``, then remove it."""
    home, slug = staging.home, staging.slug
    instance = home.instance_dir(slug)
    configured = home.config_file(slug).exists()
    if staging.kind == "restore":
        old = staging.folder / "old"
        if old.is_dir() and not instance.exists():
            os.rename(old, instance)  # killed between the two renames of a replacement
        if (staging.folder / "config.old").exists():  # killed around a replacement's commit
            if is_committed(staging, instance):
                (instance / COMMITTED).unlink(missing_ok=True)
            else:
                put_back(staging, instance)
        elif not configured:  # a new tenant that never got its config: not there at all
            if (instance / RESTORING).exists():
                shutil.rmtree(instance, ignore_errors=True)
            if home.database_url and (staging.folder / "schema-renamed").exists():
                drop_schema(home, schema_name(slug))
    elif staging.kind == "delete" and not configured:  # the tenant is gone: finish it
        shutil.rmtree(instance, ignore_errors=True)
        if home.database_url:
            drop_schema(home, schema_name(slug))
    staging.remove()


def is_committed(staging: Staging, instance: Path) -> bool:
    """Whether a replacement passed its commit point: on PostgreSQL the staging schema
    got the tenant's name; on SQLite the tenant's folder is the one that was built."""
    if staging.home.database_url:
        return not _schema_exists(staging.home, staging.schema)
    try:
        return (instance / COMMITTED).read_text().strip() == staging.token
    except OSError:
        return False


def put_back(staging: Staging, instance: Path) -> None:
    """Undo what a replacement did before its commit point: the config module and the
    .env it had written."""

    home = staging.home
    write_atomically(home.config_file(staging.slug), (staging.folder / "config.old").read_text())
    with contextlib.suppress(FileNotFoundError):
        env = (staging.folder / "env.old").read_text()
        write_atomically(instance / ".env", env, PRIVATE_FILE)


def objects_of(home: TenantHome, slug: str) -> TenantObjects | None:
    """The tenant's object storage, when the deployment keeps files in a store."""
    storage = tenant_storage(home.instance_dir(slug) / "storage", slug)
    return storage if isinstance(storage, TenantObjects) else None


def link_blob(source: Path, target: Path) -> None:
    """:func:`tenantry.storage.local.link_or_copy`, where a blob already there is the same one
    (a blob's name is its sha256)."""
    with contextlib.suppress(FileExistsError):
        link_or_copy(source, target)
