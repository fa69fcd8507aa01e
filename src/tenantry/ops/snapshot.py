"""One point in time of a tenant: its tables read in one transaction and its blobs pinned.

A backup reads the whole database in one read transaction (a repeatable-read snapshot on
PostgreSQL, one WAL snapshot on SQLite) taken under the tenant's storage lock, the lock
every change of stored files is made under, and in that moment hard-links ("pins") every
blob the snapshot's files name. A replace or delete after it drops the blob's name, never
the pinned bytes, so the archive holds the files exactly as the database describes them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import create_engine, select, text

from tenantry.data.db import TenantDatabase, tenant_database
from tenantry.home.layout import TenantHome
from tenantry.ops.archive import TABLE_MEMBER
from tenantry.ops.errors import OperationFailed
from tenantry.ops.hold import operation_lock, writes_held
from tenantry.ops.rows import (
    BATCH,
    SKIPPED_TABLES,
    SPOOL_BYTES,
    VERSION_TABLES,
    column_kind,
    encode_value,
    reflect_tables,
)
from tenantry.ops.staging import link_blob
from tenantry.storage.errors import ObjectStoreError
from tenantry.storage.local import link_or_copy
from tenantry.storage.objects import TenantObjects, tenant_storage
from tenantry.support.atomic import PRIVATE_DIR

log = logging.getLogger(__name__)

PINS = ".pins"


@dataclass
class Snapshot:
    """A tenant's data at one moment: its tables spooled as JSON lines, and its blobs."""

    tables: list[tuple[str, tempfile.SpooledTemporaryFile, dict]] = field(default_factory=list)
    revisions: dict[str, str] = field(default_factory=dict)
    sequences: dict[str, dict] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)  # sha256 -> size
    names: dict[str, str] = field(default_factory=dict)  # sha256 -> a file name of it
    pins: Path | None = None  # on the local disk: the folder of the pinned blobs
    object_pins: tuple[TenantObjects, str] | None = None  # in the store: its pins' id
    rows: dict[str, int] = field(default_factory=dict)

    def open_blob(self, sha256: str) -> IO[bytes]:
        """A pinned blob's bytes. :raises FileNotFoundError:"""
        if self.object_pins is not None:
            objects, pin_id = self.object_pins
            return objects.open_pinned(pin_id, sha256, self.blobs[sha256])
        return open(self.pins / sha256, "rb")

    def copy_blob(self, sha256: str, target: Path) -> None:
        """Give ``target`` a pinned blob's bytes (a hard link where the disk can)."""
        link_blob(self.pins / sha256, target)

    def copy_blob_into(self, sha256: str, objects: TenantObjects) -> None:
        """Copy a pinned blob to another tenant's blobs on the store's side (a clone)."""
        source, pin_id = self.object_pins
        source.copy_blob_to(objects, sha256, self.blobs[sha256], pin_id)

    def close(self) -> None:
        for _name, spool, _entry in self.tables:
            spool.close()
        if self.object_pins is not None:
            objects, pin_id = self.object_pins
            try:
                objects.drop_pins(pin_id)
            except ObjectStoreError:  # gc removes what a failed clean-up left
                log.warning("removing the pins %s of a backup failed", pin_id, exc_info=True)
            self.object_pins = None
        if self.pins is not None:
            shutil.rmtree(self.pins, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.pins.parent.rmdir()  # when no other backup pins anything


@contextlib.contextmanager
def _snapshot_connection(database: TenantDatabase):
    """A connection reading the tenant's database as of one moment."""
    if database.is_postgres:
        connection = database.engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        with connection, connection.begin():
            yield connection
        return

    # pysqlite starts transactions only before writes: BEGIN here, or every SELECT would
    # read a moment of its own.
    engine = create_engine(
        f"sqlite:///{database.path}", connect_args={"isolation_level": None, "timeout": 30}
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                connection.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()


def _sequences(connection, database: TenantDatabase, metadata) -> dict[str, dict]:
    """Where each table's id counter stands, so that a copy never hands out an id again
    (a token names its user by id)."""

    found = {}
    if not database.is_postgres:
        has_counters = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).first()  # reflection leaves SQLite's own tables out
        if has_counters:
            for name, value in connection.exec_driver_sql("SELECT name, seq FROM sqlite_sequence"):
                table = metadata.tables.get(name)
                if table is not None and len(table.primary_key.columns) == 1:
                    column = next(iter(table.primary_key.columns)).name
                    found[name] = {"column": column, "value": int(value)}
        return found
    for table in metadata.sorted_tables:
        columns = list(table.primary_key.columns)
        if len(columns) != 1:
            continue
        sequence = connection.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": f'"{database.schema}"."{table.name}"', "column": columns[0].name},
        ).scalar()
        if sequence:
            value, called = connection.execute(
                text(f"SELECT last_value, is_called FROM {sequence}")  # noqa: S608
            ).one()
            if called:
                found[table.name] = {"column": columns[0].name, "value": int(value)}
    return found


def take_snapshot(
    home: TenantHome, slug: str, database: TenantDatabase, with_files: bool = True
) -> Snapshot:
    """Read the tenant's tables and pin its blobs, at one moment (see the module's
    docstring). The caller closes the snapshot."""

    storage = tenant_storage(home.instance_dir(slug) / "storage", slug)
    snapshot = Snapshot()
    try:
        with storage.lock(), _snapshot_connection(database) as connection:
            metadata = reflect_tables(connection, database.schema)
            for table in metadata.sorted_tables:
                if VERSION_TABLES.fullmatch(table.name):
                    snapshot.revisions[table.name] = connection.execute(
                        select(table.c.version_num)
                    ).scalar()
            snapshot.sequences = _sequences(connection, database, metadata)
            now = time.time()
            for table in metadata.sorted_tables:
                name = table.name
                if name in SKIPPED_TABLES or name.startswith("sqlite_"):
                    continue
                if VERSION_TABLES.fullmatch(name):
                    continue
                if TABLE_MEMBER.fullmatch(f"database/{name}.jsonl") is None:
                    raise OperationFailed(
                        f"table {name!r} cannot be carried: an archive names tables of "
                        "letters, digits, '_' and '-' (up to 127)"
                    )
                if not with_files and name in ("stored_files", "dataset_files"):
                    continue  # no records of files whose bytes are not there
                query = select(table)
                if name == "revoked_tokens":  # a revoked token that expired needs no record
                    query = query.where(table.c.expires_at > now)
                snapshot.tables.append(_spool_table(connection, table, query, snapshot))
            if with_files:
                _pin_blobs(storage, snapshot)
    except BaseException:
        snapshot.close()
        raise
    return snapshot


def _spool_table(connection, table, query, snapshot: Snapshot):

    columns = list(table.columns)
    kinds = [column_kind(column) for column in columns]
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (Snapshot.close)
    digest = hashlib.sha256()

    def put(line: bytes) -> None:
        digest.update(line)
        spool.write(line)

    header = {"table": table.name, "columns": [c.name for c in columns], "kinds": kinds}
    put(json.dumps(header).encode() + b"\n")
    rows = 0
    names = [column.name for column in columns]
    result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(query)
    for row in result:
        values = [encode_value(value, kind) for value, kind in zip(row, kinds, strict=True)]
        put(json.dumps(values, ensure_ascii=False, default=str).encode() + b"\n")
        rows += 1
        if table.name == "stored_files":
            record = dict(zip(names, row, strict=True))
            snapshot.blobs[record["sha256"]] = record["size"]
            snapshot.names[record["sha256"]] = record["name"]
    spool.seek(0, os.SEEK_END)
    entry = {
        "name": f"database/{table.name}.jsonl",
        "size": spool.tell(),
        "sha256": digest.hexdigest(),
    }
    spool.seek(0)
    snapshot.rows[table.name] = rows
    return table.name, spool, entry


def _pin_blobs(storage, snapshot: Snapshot) -> None:
    """Pin every blob the snapshot names (under the storage lock): later replaces and
    deletes cannot take those bytes away. On the local disk, hard links in a folder of the
    backup's own; in the object store, copies under a prefix of its own."""
    names = snapshot.names
    pin_id = secrets.token_hex(8)

    def missing(sha256: str) -> OperationFailed:
        return OperationFailed(
            f"the bytes of stored file {names[sha256]!r} are missing from the storage"
        )

    if isinstance(storage, TenantObjects):
        snapshot.object_pins = (storage, pin_id)
        try:
            storage.pin(pin_id, snapshot.blobs)
        except FileNotFoundError as exc:
            raise missing(exc.args[0]) from None
        except ObjectStoreError as exc:
            raise OperationFailed(f"pinning the tenant's files failed: {exc}") from None
        return
    snapshot.pins = storage.root / PINS / pin_id
    snapshot.pins.mkdir(mode=PRIVATE_DIR, parents=True)
    for sha256 in snapshot.blobs:
        try:
            link_or_copy(storage.stored_path(names[sha256], sha256), snapshot.pins / sha256)
        except FileNotFoundError:
            raise missing(sha256) from None


@contextlib.contextmanager
def snapshot_of(home: TenantHome, slug: str) -> Iterator[Snapshot]:
    """The tenant's snapshot, its writes held only while it is read; the tenant's
    operation lock is held until the snapshot is closed, so that no sweep removes its
    pins meanwhile."""
    database = tenant_database(home, slug)
    try:
        with operation_lock(home, slug):
            with writes_held(home, slug):
                snapshot = take_snapshot(home, slug, database)
            try:
                yield snapshot
            finally:
                snapshot.close()
    finally:
        database.dispose()
