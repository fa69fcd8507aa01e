"""A tenant's scheduled backups, where they are kept: ``tenants/<slug>/backups/`` or, where
files live in a bucket, under ``PREFIX/<slug>/backups/`` (the home's disk is not shared by
the hosts; the bucket is). ``tenants backups SLUG`` lists them; ``tenants restore`` takes a
listed name as well as a path. :mod:`tenantry.ops.backup_schedule` writes them.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tenantry.home.layout import TenantHome
from tenantry.ops.errors import OperationRefused
from tenantry.ops.hold import require_tenant
from tenantry.ops.staging import objects_of
from tenantry.ops.swap import BACKUPS_FOLDER

ARCHIVE_NAME = re.compile(r"[a-z][a-z0-9-]{1,62}-\d{8}T\d{6}Z\.tar\.gz")


@dataclass(frozen=True)
class StoredBackup:
    """One scheduled backup: its file name, size, and where it is (a path or a bucket key)."""

    name: str
    size: int
    where: str


def backups_folder(home: TenantHome, slug: str) -> Path:
    return home.instance_dir(slug) / BACKUPS_FOLDER


def list_backups(home: TenantHome, slug: str) -> list[StoredBackup]:
    """The tenant's scheduled backups, oldest first (their names hold their UTC times).

    :raises UnknownTenant:
    """
    require_tenant(home, slug)
    objects = objects_of(home, slug)
    if objects is not None:
        found = [
            StoredBackup(name, size, f"{objects.prefix}{BACKUPS_FOLDER}/{name}")
            for name, size in objects.backups()
        ]
    else:
        try:
            entries = list(os.scandir(backups_folder(home, slug)))
        except FileNotFoundError:
            entries = []
        found = [
            StoredBackup(entry.name, entry.stat().st_size, entry.path)
            for entry in entries
            if entry.is_file()
        ]
    return sorted(
        (stored for stored in found if ARCHIVE_NAME.fullmatch(stored.name)),
        key=lambda stored: stored.name,
    )


def drop_backup(home: TenantHome, slug: str, name: str) -> None:
    objects = objects_of(home, slug)
    if objects is not None:
        objects.drop_backup(name)
    else:
        with contextlib.suppress(FileNotFoundError):
            (backups_folder(home, slug) / name).unlink()


def open_listed_backup(home: TenantHome, name: str):
    """A scheduled backup named as ``tenants backups`` lists it, opened to read: a path,
    or the bucket's object. None when ``name`` is not one.

    :raises OperationRefused: it names a tenant's backup that is not there.
    """
    if not ARCHIVE_NAME.fullmatch(name):
        return None
    owners = [slug for slug in home.slugs() if name.startswith(slug + "-")]
    for slug in owners:
        objects = objects_of(home, slug)
        if objects is None:
            path = backups_folder(home, slug) / name
            if path.is_file():
                return open(path, "rb")  # the caller closes it
            continue
        with contextlib.suppress(FileNotFoundError):
            return objects.open_backup(name)
    if owners:
        raise OperationRefused(f"{name} is not among the scheduled backups of {owners[0]}")
    return None
