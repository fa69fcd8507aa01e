"""Backup and verify of one tenant: one archive, at one point in time.

A backup takes a snapshot of the tenant (:mod:`tenantry.ops.snapshot`: its tables in one
read transaction, its blobs pinned) while its writes are held (:mod:`tenantry.ops.hold`:
they answer 503, as docs/design-rules.md promises clients), writes each table as neutral
JSON lines (:mod:`tenantry.ops.rows`) with its files and config into a gzipped tar
(:mod:`tenantry.ops.archive`), and publishes it only once it is whole. The revisions of
the platform's and each module's tables travel in the manifest, so that a restore can
build the schema at those revisions, load the rows, then migrate forward.

Restore, clone and delete are in their own modules (docs/tenant-life.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import secrets
from pathlib import Path

from tenantry import __version__
from tenantry.config import TenantConfigError
from tenantry.data.db import tenant_database
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.ops.archive import (
    CONFIG_MEMBER,
    ENV_MEMBER,
    ArchiveError,
    ArchiveReader,
    ArchiveWriter,
    describe,
)
from tenantry.ops.errors import OperationFailed, OperationRefused
from tenantry.ops.hold import operation_lock, require_tenant, writes_held
from tenantry.ops.record import record_action
from tenantry.ops.snapshot import Snapshot, take_snapshot
from tenantry.storage.errors import ObjectStoreError
from tenantry.support.atomic import PRIVATE_FILE


def backup_tenant(
    home: TenantHome, slug: str, out: str | os.PathLike[str] | None = None, files: bool = True
):
    """Write one archive of the tenant (default ``SLUG-<UTC>.tar.gz`` in the current
    folder, or in ``out`` if it is a folder); returns its path. The tenant's writes answer
    503 while it runs; reads go on.

    :raises UnknownTenant: :raises TenantError: the target exists, or another operation
        on the tenant runs. :raises OperationFailed: a write failed (no archive is left).
    """
    require_tenant(home, slug)
    home.check_backend()
    path = backup(home, slug, out, with_files=files)
    record_action(home, slug, "tenant.backup", Path(path).name)
    return path


def verify_archive(archive: str | os.PathLike[str]) -> dict:
    """Check an archive's manifest and every member's sha256; returns its manifest.

    :raises TenantError: it cannot be read. :raises OperationFailed: naming the first bad
        member.
    """
    return verify(Path(archive))


def default_archive_name(slug: str) -> str:
    return f"{slug}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.tar.gz"


def backup(
    home: TenantHome,
    slug: str,
    out: str | os.PathLike[str] | None = None,
    with_files: bool = True,
) -> Path:
    """Write the tenant's archive to ``out`` (a file, or a folder for the default name;
    default: the current folder); returns its path. The archive appears under its name
    only once complete (mode 0600); an existing file is never overwritten.

    :raises OperationRefused: the target exists. :raises OperationFailed: a write failed.
    """
    target = _archive_target(slug, out)
    with operation_lock(home, slug):
        write_backup(home, slug, target, with_files)
    return target


def write_backup(
    home: TenantHome, slug: str, target: Path, with_files: bool, hold: bool = True
) -> None:
    """Write the archive, holding the tenant's writes unless the caller does (``hold``
    False); the operation lock held."""
    database = tenant_database(home, slug)
    try:
        with writes_held(home, slug) if hold else contextlib.nullcontext():
            snapshot = take_snapshot(home, slug, database, with_files)
            try:
                _write_archive(home, slug, snapshot, target, with_files)
            finally:
                snapshot.close()
    finally:
        database.dispose()


def _archive_target(slug: str, out: str | os.PathLike[str] | None) -> Path:
    target = Path(out) if out is not None else Path.cwd()
    if os.fspath(out or "").endswith(os.sep) and not target.is_dir():
        raise OperationRefused(f"{target} is not a folder")
    if target.is_dir():
        target = target / default_archive_name(slug)
    if target.exists():
        raise OperationRefused(f"{target} exists: choose another --out")
    if not target.parent.is_dir():
        raise OperationRefused(f"{target.parent} is not a folder")
    return target


def _manifest(home: TenantHome, slug: str, snapshot: Snapshot, with_files: bool, small) -> dict:

    try:
        name = load_config_class(home, slug).NAME or slug
    except TenantConfigError:
        name = slug
    members = [describe(member, data) for member, data in small]
    members += [entry for _name, _spool, entry in snapshot.tables]
    members += [
        {"name": f"files/{sha256}", "size": size, "sha256": sha256}
        for sha256, size in sorted(snapshot.blobs.items())
    ]
    return {
        "kind": "tenantry-backup",
        "format": 1,
        "slug": slug,
        "name": name,
        "created": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "tenantry_version": __version__,
        "backend": "postgresql" if home.database_url else "sqlite",
        "revisions": snapshot.revisions,
        "sequences": snapshot.sequences,
        "rows": snapshot.rows,
        "files": with_files,
        "members": members,
    }


def _write_archive(
    home: TenantHome, slug: str, snapshot: Snapshot, target: Path, with_files: bool
) -> None:
    small = [
        (CONFIG_MEMBER, home.config_file(slug).read_bytes()),
        (ENV_MEMBER, home.env_file(slug).read_bytes()),
    ]
    manifest = _manifest(home, slug, snapshot, with_files, small)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE), "wb") as out:
            with ArchiveWriter(out, manifest) as writer:
                for member, data in small:
                    writer.add(member, _BytesSource(data))
                for _name, spool, entry in snapshot.tables:
                    writer.add(entry["name"], spool)
                for sha256 in sorted(snapshot.blobs):
                    with snapshot.open_blob(sha256) as blob:
                        writer.add(f"files/{sha256}", blob)
                writer.close()
            out.flush()
            os.fsync(out.fileno())
        _publish(temp, target)
    except FileExistsError:
        raise OperationRefused(f"{target} appeared meanwhile: choose another --out") from None
    except ArchiveError as exc:
        raise OperationFailed(str(exc)) from None
    except ObjectStoreError as exc:
        raise OperationFailed(f"reading the tenant's files failed: {exc}") from None
    except OSError as exc:
        raise OperationFailed(f"writing {target} failed: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)


def _publish(temp: Path, target: Path) -> None:
    """Give the finished archive its name, never over a file that appeared meanwhile
    (a hard link, or where the filesystem has none, a rename after a look)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if target.exists():
            raise FileExistsError(target) from None
        os.rename(temp, target)


class _BytesSource:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.offset = 0

    def read(self, size: int) -> bytes:
        chunk = self.data[self.offset : self.offset + size]
        self.offset += len(chunk)
        return bytes(chunk)


def verify(archive: Path) -> dict:
    """Read the whole archive and check its manifest and every member's sha256; returns
    the manifest. Touches no tenant.

    :raises OperationFailed: naming the first bad member.
    """
    try:
        with open(archive, "rb") as source, ArchiveReader(source) as reader:
            for _member, stream in reader.members():
                while stream.read(1024 * 1024):
                    pass
            return reader.manifest
    except ArchiveError as exc:
        raise OperationFailed(f"{archive}: {exc}") from None
    except OSError as exc:
        raise OperationRefused(f"{archive} cannot be read: {exc.strerror or exc}") from None
