"""Putting a tenant built aside in place in one step: the schemas swap names in one
transaction, the folders in one ``renameat2(RENAME_EXCHANGE)`` (through ctypes: Python
has no binding for it)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
from pathlib import Path

from sqlalchemy import text

from tenantry.data.db import schema_name, shared_engine
from tenantry.home.layout import TenantHome
from tenantry.ops.errors import OperationFailed
from tenantry.ops.staging import COMMITTED, RESTORING, Staging, is_committed, link_blob, put_back
from tenantry.storage.local import TenantStorage
from tenantry.support.atomic import PRIVATE_DIR, write_atomically

RENAME_EXCHANGE = 2
# A tenant's scheduled backups, in its folder (tenantry.ops.backups).
BACKUPS_FOLDER = "backups"
AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2``); False where it cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    done = renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code))


def swap_in(
    home: TenantHome, staging: Staging, slug: str, config_text: str, replacing: bool
) -> None:
    """Put the tenant built in ``staging`` in place of ``slug``. A new tenant: its schema
    and folder renamed in, then its config module (it exists from then on). Over a
    tenant: its config module (and .env) written first, with the old ones kept in the
    journal, then one step that cannot be half done — a schema rename transaction on
    PostgreSQL, a folder exchange on SQLite — the commit point; a failure before it puts
    the config back. gc does the same for a process killed there."""
    instance = home.instance_dir(slug)
    if not replacing or not instance.exists():
        _swap_in_new(home, staging, slug, instance, config_text)
        return

    config = home.config_file(slug)
    (staging.folder / "config.old").write_text(config.read_text())
    if home.database_url:
        (staging.folder / "env.old").write_text(home.env_file(slug).read_text())
    write_atomically(config, config_text)
    try:
        if home.database_url:
            _swap_in_schema(home, staging, slug, instance)
        else:
            _swap_in_folder(staging, instance)
    except BaseException:
        if not is_committed(staging, instance):
            put_back(staging, instance)
        raise
    (instance / COMMITTED).unlink(missing_ok=True)
    home.record_backend()


def _swap_in_new(
    home: TenantHome, staging: Staging, slug: str, instance: Path, config_text: str
) -> None:
    """The slot is empty (or a tenant lost its folder): the schema renamed into place,
    then the folder (marked until the config module is written), then the config."""

    (staging.tenant / RESTORING).touch()
    if staging.schema:
        (staging.folder / "schema-renamed").touch()  # the journal: gc drops it if need be
        _rename_schemas(home, {schema_name(slug): staging.old_schema}, staging.schema, slug)
    os.rename(staging.tenant, instance)
    home.config_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(home.config_file(slug), config_text)
    (instance / RESTORING).unlink(missing_ok=True)
    home.record_backend()


def _swap_in_schema(home: TenantHome, staging: Staging, slug: str, instance: Path) -> None:
    """PostgreSQL, over a tenant: its .env and blobs put in first (blobs are addressed by
    content: the old tenant does not see new ones), then its schema and the restored one
    swap names in one transaction, the commit point. Then the old tenant's links and the
    blobs the restored one does not name go."""
    storage = TenantStorage(instance / "storage")
    storage.ensure()
    os.replace(staging.tenant / ".env", instance / ".env")
    keep, added = set(), []
    try:
        for entry in os.scandir(staging.tenant / "storage" / ".blobs"):
            keep.add(entry.name)
            if not (storage.blobs / entry.name).exists():
                link_blob(Path(entry.path), storage.blobs / entry.name)
                added.append(storage.blobs / entry.name)
        _rename_schemas(home, {schema_name(slug): staging.old_schema}, staging.schema, slug)
    except BaseException:
        for path in added:  # not committed: the old tenant gets no strays
            path.unlink(missing_ok=True)
        raise
    for folder in (storage.links, storage.blobs):
        for entry in os.scandir(folder):
            if folder == storage.links or entry.name not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _swap_in_folder(staging: Staging, instance: Path) -> None:
    """SQLite, over a tenant: its folder (database included) and the restored one swap
    places in one ``renameat2(RENAME_EXCHANGE)``, the commit point; where the filesystem
    cannot, two renames, which gc puts back if the process dies between them."""
    for marker in ("disabled", "maintenance", "writes-held"):  # the deployment's state
        with contextlib.suppress(FileNotFoundError):
            shutil.copy2(instance / marker, staging.tenant / marker)
    _keep_backups(instance, staging.tenant)
    (staging.tenant / COMMITTED).write_text(staging.token + "\n")
    if _exchange(staging.tenant, instance):
        return
    old = staging.folder / "old"
    os.rename(instance, old)
    try:
        os.rename(staging.tenant, instance)
    except OSError as exc:
        try:
            os.rename(old, instance)
        except OSError:
            staging.keep = True  # the only copy of the tenant: never removed
            raise OperationFailed(
                f"restoring failed ({exc.strerror}) and the tenant's folder could not be put "
                f"back: it is at {old}; move it to {instance}"
            ) from None
        raise


def _keep_backups(instance: Path, new: Path) -> None:
    """The scheduled backups stay with the tenant's slot, not with the folder swapped out
    (a restore is often of one of them): linked into the new folder, not moved, so the
    old folder keeps them until the swap is done."""
    try:
        archives = list(os.scandir(instance / BACKUPS_FOLDER))
    except FileNotFoundError:
        return
    (new / BACKUPS_FOLDER).mkdir(mode=PRIVATE_DIR, exist_ok=True)
    for entry in archives:
        if entry.is_file():
            link_blob(Path(entry.path), new / BACKUPS_FOLDER / entry.name)


def _rename_schemas(home: TenantHome, aside: dict[str, str], new: str, slug: str) -> None:
    """In one transaction: move each existing schema of ``aside`` to its new name, and
    ``new`` to the tenant's."""

    with shared_engine(home.database_url).begin() as connection:
        for name, moved in aside.items():
            exists = connection.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": name},
            ).first()
            if exists:
                connection.execute(text(f'ALTER SCHEMA "{name}" RENAME TO "{moved}"'))
        connection.execute(text(f'ALTER SCHEMA "{new}" RENAME TO "{schema_name(slug)}"'))
