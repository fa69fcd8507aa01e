"""Backup, verify, restore, clone and delete of one tenant (CONTRACT §12).

:mod:`tenantry.tenants` exposes these as its operations; this module holds the work.

**One point in time.** A backup reads the whole database in one read transaction (a
repeatable-read snapshot on PostgreSQL, one WAL snapshot on SQLite) taken under the
tenant's storage lock, the lock every change of stored files is made under, and in that
moment hard-links ("pins") every blob the snapshot's files name. A replace or delete after
it drops the blob's name, never the pinned bytes, so the archive holds the files exactly as
the database describes them. Meanwhile the tenant's writes answer 503 (a marker every
worker reads at its once-a-second re-check), which is what the contract promises clients.

**Backend-neutral data.** Each table is written as JSON lines: a header naming its columns
and their kinds, then one JSON array per row. Dates, bytes and decimals are written as text
and read back by kind, so an archive made on SQLite restores on PostgreSQL and the reverse.
The revisions of the platform's and each module's tables travel in the manifest; a restore
builds the schema at those revisions, loads the rows, then migrates forward.

**Atomic replacement.** A restore builds the whole tenant aside, in a staging folder of
``tenants/`` (and a staging schema on PostgreSQL), and swaps it in only once it is complete
and checked: the schemas swap names in one transaction, the folders in one
``renameat2(RENAME_EXCHANGE)``, then the config module is replaced. A restore killed before
the swap leaves the old tenant as it was; ``tenantry gc`` removes what it left aside.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import errno
import functools
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO

from tenantry import __version__, audit
from tenantry.archive import (
    CONFIG_MEMBER,
    ENV_MEMBER,
    FILE_MEMBER,
    MAX_SMALL_MEMBER,
    TABLE_MEMBER,
    ArchiveError,
    ArchiveReader,
    ArchiveWriter,
    describe,
)
from tenantry.config import TenantConfigError, is_valid_slug, tenant_modules, tenant_settings
from tenantry.config_loader import load_config_file
from tenantry.db import Base, TenantDatabase, schema_name, tenant_database
from tenantry.home import WRITES_HELD_HEARTBEAT, TenantHome
from tenantry.hosts import HostIndex
from tenantry.locking import file_lock_if_free
from tenantry.objects import ObjectStoreError, TenantObjects, tenant_storage
from tenantry.storage import PRIVATE_DIR, PRIVATE_FILE, TenantStorage, link_or_copy
from tenantry.tenant_secrets import parse_env, read_secrets, with_new_secret_key
from tenantry.tenants import WSGI_MODULE, OperationFailed, TenantError, _class_name, _literal

log = logging.getLogger(__name__)

# Rows a copy of the tenant need not carry: lock-outs, quota reservations of uploads in
# progress, one-time links (their snapshots are not carried either).
SKIPPED_TABLES = frozenset(("login_failures", "upload_reservations", "one_time_links"))
VERSION_TABLES = re.compile(r"alembic_version(_[a-z0-9_]+)?")
BATCH = 1000
SPOOL_BYTES = 8 * 1024 * 1024
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
PINS = ".pins"
TRASH = ".trash"
LOCKS = ".locks"
# What a restore leaves free on the disk besides the archive's contents.
DISK_MARGIN = 64 * 1024 * 1024
# How long an operation waits for another one on the same tenant (a sweep, say) to end.
LOCK_WAIT = 2.0
RENAME_EXCHANGE = 2
AT_FDCWD = -100


class OperationError(TenantError):
    """The operation was refused before anything was written (exit 2)."""


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
        _link_or_copy(self.pins / sha256, target)

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


# -- holding writes, and one operation per tenant at a time --------------------------------


@contextlib.contextmanager
def operation_lock(home: TenantHome, slug: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """One backup, restore, clone or delete of a tenant at a time, across processes
    (waiting up to ``wait`` seconds for another to end).

    :raises OperationError: another one runs.
    """
    folder = home.tenants_dir / LOCKS
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        with file_lock_if_free(folder / f"{slug}.lock") as mine:
            if mine:
                yield
                return
        if time.monotonic() > deadline:
            raise OperationError(f"another backup, restore, clone or delete of {slug} is running")
        time.sleep(0.05)


@contextlib.contextmanager
def writes_held(home: TenantHome, *slugs_or_folders: str | Path) -> Iterator[None]:
    """Hold the writes of tenants (by slug) or of tenant folders being built: their
    markers say so to every worker (within its 1 s re-check) until the block ends, kept
    fresh by a heartbeat so that a killed operation stops holding them on its own."""
    markers = [
        home.writes_held_marker(item) if isinstance(item, str) else item / "writes-held"
        for item in slugs_or_folders
    ]
    for marker in markers:
        with contextlib.suppress(FileNotFoundError):  # a tenant that lost its folder
            marker.touch()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(WRITES_HELD_HEARTBEAT):
            for marker in markers:
                with contextlib.suppress(OSError):
                    os.utime(marker)

    heartbeat = threading.Thread(target=beat, name="tenantry-writes-held", daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join()
        for marker in markers:
            marker.unlink(missing_ok=True)


# -- the database as neutral data ----------------------------------------------------------


def _kind(column) -> str:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return "plain"
    return {
        dt.datetime: "datetime",
        dt.date: "date",
        dt.time: "time",
        bytes: "bytes",
        Decimal: "decimal",
    }.get(python_type, "plain")


def _encode(value, kind: str):
    if value is None or kind == "plain":
        return value
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "decimal":
        return str(value)
    return value.isoformat()


def _decode(value, kind: str, column):
    if value is None or kind == "plain":
        return value
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "time":
        return dt.time.fromisoformat(value)
    moment = dt.datetime.fromisoformat(value)
    # The platform stores UTC. PostgreSQL keeps the zone; SQLite gives it back naive.
    if getattr(column.type, "timezone", False):
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


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
    from sqlalchemy import create_engine

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


def _reflect(connection, schema: str | None):
    from sqlalchemy import MetaData

    metadata = MetaData()
    metadata.reflect(connection, schema=schema)
    return metadata


def _sequences(connection, database: TenantDatabase, metadata) -> dict[str, dict]:
    """Where each table's id counter stands, so that a copy never hands out an id again
    (a token names its user by id)."""
    from sqlalchemy import text

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
    from sqlalchemy import select

    storage = tenant_storage(home.instance_dir(slug) / "storage", slug)
    snapshot = Snapshot()
    try:
        with storage.lock(), _snapshot_connection(database) as connection:
            metadata = _reflect(connection, database.schema)
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
    import hashlib

    columns = list(table.columns)
    kinds = [_kind(column) for column in columns]
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
        values = [_encode(value, kind) for value, kind in zip(row, kinds, strict=True)]
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


def _load_tables(
    database: TenantDatabase, tables: list[tuple[str, Path]], sequences: dict[str, dict]
) -> None:
    """Insert the rows of each JSON-lines table file into the (migrated, empty) database,
    parents before children, in one transaction; then set the id counters past every id
    the tenant ever handed out."""
    with database.engine.begin() as connection:
        metadata = _reflect(connection, database.schema)
        by_name = _tables_by_name(metadata)
        order = {table.name: index for index, table in enumerate(metadata.sorted_tables)}
        for name, _path in tables:
            if name not in by_name:
                raise OperationFailed(
                    f"the archive holds table {name}, and no installed endpoint module makes "
                    "it: install the module it came from"
                )
        for name, path in sorted(tables, key=lambda item: order[item[0]]):
            _load_table(connection, by_name[name], path)
        for name, _path in tables:
            _set_counter(connection, database, by_name[name], sequences.get(name))


def _set_counter(connection, database: TenantDatabase, table, recorded: dict | None) -> None:
    """The next id of ``table`` beyond its highest and beyond what the archive recorded."""
    from sqlalchemy import Integer, func, select, text

    columns = list(table.primary_key.columns)
    if len(columns) != 1 or not isinstance(columns[0].type, Integer):
        return
    column = columns[0]
    highest = connection.execute(select(func.max(column))).scalar() or 0
    if recorded and recorded.get("column") == column.name:
        highest = max(highest, recorded["value"])
    if highest <= 0:
        return
    if database.is_postgres:
        qualified = f'"{database.schema}"."{table.name}"'
        sequence = connection.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": qualified, "column": column.name},
        ).scalar()
        if sequence:
            connection.execute(
                text("SELECT setval(:sequence, :value)"), {"sequence": sequence, "value": highest}
            )
    elif recorded:  # SQLite keeps counters only for AUTOINCREMENT tables; no key, so:
        updated = connection.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (highest, table.name)
        )
        if not updated.rowcount:
            connection.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, highest)
            )


def _load_table(connection, table, path: Path) -> None:
    with open(path, "rb") as lines:
        try:
            header = json.loads(lines.readline())
            names, kinds = header["columns"], header["kinds"]
            if len(names) != len(kinds):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise OperationFailed(f"database/{table.name}.jsonl has no valid header") from None
        for name in names:
            if name not in table.c:
                raise OperationFailed(f"table {table.name} has no column {name!r} here")
        columns = [table.c[name] for name in names]
        batch = []
        for number, line in enumerate(lines, start=2):
            try:
                values = json.loads(line)
                if not isinstance(values, list) or len(values) != len(names):
                    raise ValueError("wrong number of values")
                row = {
                    name: _decode(value, kind, column)
                    for name, value, kind, column in zip(names, values, kinds, columns, strict=True)
                }
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise OperationFailed(
                    f"database/{table.name}.jsonl line {number} is invalid: {exc}"
                ) from None
            batch.append(row)
            if len(batch) >= BATCH:
                connection.execute(table.insert(), batch)
                batch = []
        if batch:
            connection.execute(table.insert(), batch)


# -- backup and verify ---------------------------------------------------------------------


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

    :raises OperationError: the target exists. :raises OperationFailed: a write failed.
    """
    target = _archive_target(slug, out)
    with operation_lock(home, slug):
        _backup(home, slug, target, with_files)
    return target


def _backup(home: TenantHome, slug: str, target: Path, with_files: bool, hold: bool = True) -> None:
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
        raise OperationError(f"{target} is not a folder")
    if target.is_dir():
        target = target / default_archive_name(slug)
    if target.exists():
        raise OperationError(f"{target} exists: choose another --out")
    if not target.parent.is_dir():
        raise OperationError(f"{target.parent} is not a folder")
    return target


def _manifest(home: TenantHome, slug: str, snapshot: Snapshot, with_files: bool, small) -> dict:
    from tenantry.config_loader import load_config_class

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
        raise OperationError(f"{target} appeared meanwhile: choose another --out") from None
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
        raise OperationError(f"{archive} cannot be read: {exc.strerror or exc}") from None


# -- restore and clone ---------------------------------------------------------------------


class Staging:
    """A tenant built aside, in a folder of ``tenants/`` (``.restore-<slug>-<token>``, or
    ``.delete-...``) holding ``tenant/`` (the instance folder being built), the
    operation's lock and its journal; on PostgreSQL it names its schemas:
    ``tenantry_restore_<token>`` (the one being built) and ``tenantry_old_<token>`` (the
    one it replaced). While the lock is held, gc leaves it alone; once its process is
    gone, gc finishes or undoes what it left (:func:`remove_stale_staging`)."""

    def __init__(self, home: TenantHome, folder: Path):
        match = STAGING_NAME.fullmatch(folder.name)
        if match is None:
            raise ValueError(f"not a staging folder: {folder.name}")
        self.home = home
        self.folder = folder
        self.kind, self.slug, self.token = match.groups()
        self.schema = f"tenantry_restore_{self.token}" if home.database_url else None
        self.old_schema = f"tenantry_old_{self.token}" if home.database_url else None
        self.keep = False  # True: it holds the only copy of a tenant (see _swap_in_folder)

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
                _drop_schema(self.home, schema)
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)


def _schema(home: TenantHome, schema: str) -> TenantDatabase:
    """A PostgreSQL schema of the home by its name (a staging one, or a tenant's)."""
    return TenantDatabase(schema, home.tenants_dir, home.database_url, schema=schema)


def _drop_schema(home: TenantHome, schema: str) -> None:
    _schema(home, schema).drop_schema()


def _schema_exists(home: TenantHome, schema: str) -> bool:
    return _schema(home, schema).exists()


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
                        _recover(staging)
                        removed += 1
        except OperationError:
            pass  # an operation on that tenant runs: it is not stale
        except Exception:
            log.exception("removing %s failed", entry.name)
    return removed


def _recover(staging: Staging) -> None:
    """Put things right after a process died holding ``staging``, then remove it."""
    home, slug = staging.home, staging.slug
    instance = home.instance_dir(slug)
    configured = home.config_file(slug).exists()
    if staging.kind == "restore":
        old = staging.folder / "old"
        if old.is_dir() and not instance.exists():
            os.rename(old, instance)  # killed between the two renames of a replacement
        if (staging.folder / "config.old").exists():  # killed around a replacement's commit
            if _committed(staging, instance):
                (instance / COMMITTED).unlink(missing_ok=True)
            else:
                _put_back(staging, instance)
        elif not configured:  # a new tenant that never got its config: not there at all
            if (instance / RESTORING).exists():
                shutil.rmtree(instance, ignore_errors=True)
            if home.database_url and (staging.folder / "schema-renamed").exists():
                _drop_schema(home, schema_name(slug))
    elif staging.kind == "delete" and not configured:  # the tenant is gone: finish it
        shutil.rmtree(instance, ignore_errors=True)
        if home.database_url:
            _drop_schema(home, schema_name(slug))
    staging.remove()


def _committed(staging: Staging, instance: Path) -> bool:
    """Whether a replacement passed its commit point: on PostgreSQL the staging schema
    got the tenant's name; on SQLite the tenant's folder is the one that was built."""
    if staging.home.database_url:
        return not _schema_exists(staging.home, staging.schema)
    try:
        return (instance / COMMITTED).read_text().strip() == staging.token
    except OSError:
        return False


def _put_back(staging: Staging, instance: Path) -> None:
    """Undo what a replacement did before its commit point: the config module and the
    .env it had written."""
    from tenantry.atomic import write_atomically

    home = staging.home
    write_atomically(home.config_file(staging.slug), (staging.folder / "config.old").read_text())
    with contextlib.suppress(FileNotFoundError):
        env = (staging.folder / "env.old").read_text()
        write_atomically(instance / ".env", env, PRIVATE_FILE)


def remove_stale_pins(home: TenantHome, slug: str) -> int:
    """Remove the pins of backups that did not end (killed); the caller holds the tenant's
    :func:`operation_lock` (no backup of it runs)."""
    pins = home.instance_dir(slug) / "storage" / PINS
    objects = _objects_of(home, slug)
    removed = objects.drop_pins() if objects is not None else 0
    if pins.is_dir():
        for entry in os.scandir(pins):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def _check_revisions(revisions: object) -> dict[str, str]:
    """:raises OperationFailed: the archive's platform revision is newer than this
    tenantry's (or not one of its revisions)."""
    from tenantry.db import MIGRATIONS_DIR, SCHEMA_REVISION

    if (
        not isinstance(revisions, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in revisions.items())
        or "alembic_version" not in revisions
    ):
        raise OperationFailed("the manifest does not give the database's revision")
    known = sorted(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    revision = revisions["alembic_version"]
    if revision not in known:
        raise OperationFailed(
            f"the archive's database is at revision {revision}, which this tenantry (at "
            f"{SCHEMA_REVISION}) does not know: restore it with a newer tenantry"
        )
    return revisions


def _rewrite_config(source: str, old: str, new: str, drop_hosts: bool) -> str:
    """The config module ``source`` for a copy named ``new``: its SLUG (and a NAME that
    was the old slug, and the class name made from it); HOSTS emptied if ``drop_hosts``.

    :raises OperationFailed: the module does not have the lines tenantry writes.
    """

    def replace(pattern: str, line: str, text: str, required: bool = True) -> str:
        found = re.subn(pattern, line, text, count=1, flags=re.MULTILINE)
        if required and found[1] != 1:
            raise OperationFailed(
                "the config module has no line like the ones tenantry writes "
                f"({pattern!r}): copy it by hand"
            )
        return found[0]

    def assigned(name: str, value: str) -> str:  # NAME = "value" (either quotes, a comment)
        return rf"^(\s+){name}\s*=\s*([\"']){re.escape(value)}\2(\s*#.*)?\s*$"

    text = replace(assigned("SLUG", old), rf"\1SLUG = {_literal(new)}\3", source)
    text = replace(assigned("NAME", old), rf"\1NAME = {_literal(new)}\3", text, required=False)
    text = replace(
        rf"^class {_class_name(old)}\(", f"class {_class_name(new)}(", text, required=False
    )
    if drop_hosts:
        text = replace(r"^(\s+)HOSTS = .*$", r"\1HOSTS = ()", text)
    return text


def _taken_hosts(home: TenantHome, hosts, besides: str) -> list[str]:
    index = HostIndex(home, persist=False)
    index.refresh()
    return sorted(h for h in hosts if any(slug != besides for slug in index.claims.get(h, ())))


def _require_new_slot(home: TenantHome, slug: str, hint: str = ": --force replaces it") -> None:
    if home.config_file(slug).exists():
        raise OperationError(f"tenant {slug!r} already exists{hint}")
    if home.instance_dir(slug).exists():
        raise OperationError(
            f"tenants/{slug}/ exists without a config module (left by a tenant removed by "
            "hand, or a killed restore: `tenantry gc` removes the latter)"
        )
    if home.database_url and tenant_database(home, slug).exists():
        raise OperationError(
            f"the database already holds the schema of an earlier tenant {slug!r}: drop it "
            "first, or choose another slug"
        )


@dataclass
class Restored:
    slug: str
    users: int
    files: int
    notes: list[str]


def restore(
    home: TenantHome, archive: Path, as_slug: str | None = None, force: bool = False
) -> Restored:
    """Recreate a tenant from an archive (see the module's docstring).

    :raises OperationError: the slug is invalid, or exists without ``force``; the archive
        cannot be opened. :raises OperationFailed: the archive is bad or too new, or the
        restore failed; the tenant there (if any) is as it was.
    """
    if as_slug is not None and not is_valid_slug(as_slug):
        raise OperationError(f"invalid slug {as_slug!r}")
    try:
        source = open(archive, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise OperationError(f"{archive} cannot be read: {exc.strerror or exc}") from None
    with source:
        try:
            with ArchiveReader(source) as reader:
                restored = _restore(home, reader, archive.name, as_slug, force)
        except ArchiveError as exc:
            raise OperationFailed(f"{archive}: {exc}") from None
    _sweep_after(home, restored.slug)
    return restored


def _restore(
    home: TenantHome, reader: ArchiveReader, archive_name: str, as_slug: str | None, force: bool
) -> Restored:
    manifest = reader.manifest
    original = manifest.get("slug")
    if not isinstance(original, str) or not is_valid_slug(original):
        raise ArchiveError("the manifest names no valid slug")
    slug = as_slug or original
    revisions = _check_revisions(manifest.get("revisions"))
    sequences = _check_sequences(manifest.get("sequences"))
    if not (force and home.exists(slug)):
        _require_new_slot(home, slug)
    root = home.tenants_dir if home.tenants_dir.exists() else home.root
    free = shutil.disk_usage(root).free
    if reader.total_size + DISK_MARGIN > free:
        raise ArchiveError(f"restoring needs {reader.total_size} bytes; the disk has {free} free")
    home.tenants_dir.mkdir(parents=True, exist_ok=True)
    with operation_lock(home, slug):
        replacing = force and home.exists(slug)
        if not replacing:
            _require_new_slot(home, slug)  # again, now that no other operation can take it
        # A write to the tenant being replaced would be lost with it: held from the start.
        holding = writes_held(home, slug) if replacing else contextlib.nullcontext()
        with holding, Staging.create(home, slug) as staging:
            try:
                tables, config, env = _extract(reader, staging)
            except OSError as exc:
                raise OperationFailed(f"restoring failed: {exc.strerror or exc}") from None
            try:
                config_text, env_text = config.decode(), env.decode()
            except UnicodeDecodeError:
                raise ArchiveError("the config module or the .env is not UTF-8 text") from None
            if slug != original:
                env_text = with_new_secret_key(env_text)
            fill = functools.partial(
                _migrate_and_load,
                tables=tables,
                revisions=revisions,
                sequences=sequences,
                blobs=staging.tenant / "storage" / ".blobs" if manifest.get("files") else None,
            )
            if replacing:
                key = parse_env(env_text).get("SECRET_KEY")
                fill = _and_then(fill, functools.partial(_keep_sessions_ended, home, slug, key))
            recorded = ("tenant.restore", archive_name)
            try:
                result = _build(
                    home, staging, slug, original, config_text, env_text, fill, replacing, recorded
                )
            except BaseException:
                if not replacing:
                    _forget_unmade(home, slug)
                raise
    rows = manifest.get("rows")
    result.files = rows.get("stored_files", 0) if isinstance(rows, dict) else 0
    return result


def _and_then(first, then):
    def both(database, modules):
        first(database, modules)
        then(database)

    return both


def _check_sequences(sequences: object) -> dict[str, dict]:
    if sequences is None:
        return {}
    if not isinstance(sequences, dict) or not all(
        isinstance(counter, dict)
        and isinstance(counter.get("column"), str)
        and isinstance(counter.get("value"), int)
        and not isinstance(counter.get("value"), bool)
        for counter in sequences.values()
    ):
        raise ArchiveError("the manifest's sequences are not {table: {column, value}}")
    return sequences


def _keep_sessions_ended(
    home: TenantHome, slug: str, restored_key: str | None, restored: TenantDatabase
) -> None:
    """Over a live tenant, a restore must not bring back sessions ended since the backup:
    the live tenant's revocations are kept, a user's token generation never goes back
    (users by id: a token names its user by id), users deleted since come back with none
    of their old tokens valid, and if the live key is not the archived one (rotated since),
    no token of either works."""
    from sqlalchemy import select, update
    from sqlalchemy.exc import SQLAlchemyError

    live = tenant_database(home, slug, read_only=True)  # creates nothing if it is lost
    try:
        with live.engine.connect() as connection:
            tables = _tables_by_name(_reflect(connection, live.schema))
            users, revoked = tables.get("users"), tables.get("revoked_tokens")
            if users is None or "token_generation" not in users.c:
                generations = {}
            else:
                query = select(users.c.id, users.c.token_generation)
                generations = {user: gen for user, gen in connection.execute(query)}
            ended = []
            if revoked is not None:
                alive = revoked.c.expires_at > time.time()
                rows = connection.execute(select(revoked).where(alive)).mappings()
                ended = [dict(row) for row in rows]
    except SQLAlchemyError:
        generations, ended = None, []  # the live database is broken (why restore, else)
    finally:
        live.dispose()
    rotated = read_secrets(home, slug).get("SECRET_KEY") != restored_key
    with restored.engine.begin() as connection:
        tables = _tables_by_name(_reflect(connection, restored.schema))
        users, revoked = tables["users"], tables["revoked_tokens"]
        for user, generation in list(
            connection.execute(select(users.c.id, users.c.token_generation))
        ):
            live_generation = (generations or {}).get(user)
            kept = max(generation, live_generation or 0)
            if generations is None or rotated or live_generation is None:
                kept += 1  # unknown, rotated or deleted since: its old tokens die
            if kept != generation:
                connection.execute(
                    update(users).where(users.c.id == user).values(token_generation=kept)
                )
        present = set(connection.execute(select(revoked.c.jti)).scalars())
        missing = [row for row in ended if row["jti"] not in present]
        if missing:
            connection.execute(revoked.insert(), missing)


def _tables_by_name(metadata) -> dict:
    return {table.name: table for table in metadata.sorted_tables}


def _extract(reader: ArchiveReader, staging: Staging):
    """Stream every member into the staging folder, checking each; returns the table
    files, the config module and the .env. :raises ArchiveError:"""
    blobs = staging.tenant / "storage" / ".blobs"
    TenantStorage(staging.tenant / "storage").ensure()
    tables_dir = staging.folder / ".tables"
    tables_dir.mkdir(mode=PRIVATE_DIR)
    tables: list[tuple[str, Path]] = []
    small: dict[str, bytes] = {}
    for member, stream in reader.members():
        if member.name in (CONFIG_MEMBER, ENV_MEMBER):
            if member.size > MAX_SMALL_MEMBER:
                raise ArchiveError(f"member {member.name} is too large")
            small[member.name] = stream.read()
            continue
        table = TABLE_MEMBER.fullmatch(member.name)
        if table is not None:
            name = table.group(1)
            if name in SKIPPED_TABLES or VERSION_TABLES.fullmatch(name):
                raise ArchiveError(f"member {member.name} is not one a backup carries")
            path = tables_dir / f"{name}.jsonl"
            tables.append((name, path))
        else:
            path = blobs / FILE_MEMBER.fullmatch(member.name).group(1)
        part = path.with_name(path.name + ".part")
        with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE), "wb") as out:
            while chunk := stream.read(1024 * 1024):
                out.write(chunk)
        stream.finish()  # raises before a damaged member gets its name
        os.replace(part, path)
    return tables, small[CONFIG_MEMBER], small[ENV_MEMBER]


def _build(
    home: TenantHome,
    staging: Staging,
    slug: str,
    original: str,
    config_text: str,
    env_text: str,
    fill: Callable[[TenantDatabase, tuple], None],
    replacing: bool,
    recorded: tuple[str, str],
) -> Restored:
    """Finish the tenant in ``staging`` (config, .env; its database made by ``fill``,
    given the database and the config's modules, and the audit entry ``recorded``, an
    action and its target, so that it is there exactly when the tenant is) and swap it in.

    :raises OperationFailed: the tenant cannot be made or put in place (the one there,
        if any, is as it was).
    """
    from sqlalchemy.exc import SQLAlchemyError

    notes: list[str] = []
    config_class, config_text = _restored_config(home, staging, slug, original, config_text, notes)
    try:
        modules = tenant_modules(config_class)
        tenant_settings(config_class, parse_env(env_text), staging.tenant)
    except TenantConfigError as exc:
        raise OperationFailed("; ".join(exc.problems)) from None
    env = staging.tenant / ".env"
    os.close(os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    env.write_text(env_text)
    (staging.tenant / "wsgi.py").write_text(WSGI_MODULE.format(slug=slug))
    try:
        database = staging.database(slug)
        try:
            fill(database, modules)
            audit.record_now(database, *recorded)
            users = _count(database, "users")
        finally:
            database.dispose()
        shutil.rmtree(staging.folder / ".tables", ignore_errors=True)
        objects = _objects_of(home, slug)
        if objects is not None:
            _publish_blobs(objects, staging)
        _swap_in(home, staging, slug, config_text, replacing)
    except (OSError, SQLAlchemyError, ObjectStoreError) as exc:
        raise OperationFailed(
            f"putting {slug} in place failed ({_reason(exc)}); the tenant there is as it was"
        ) from None
    return Restored(slug, users, 0, notes)


def _objects_of(home: TenantHome, slug: str) -> TenantObjects | None:
    """The tenant's object storage, when the deployment keeps files in a store."""
    storage = tenant_storage(home.instance_dir(slug) / "storage", slug)
    return storage if isinstance(storage, TenantObjects) else None


def _publish_blobs(objects: TenantObjects, staging: Staging) -> None:
    """Object storage: stream the blobs staged on the local disk (checked against their
    records already) into the tenant's prefix, then remove the local copies. Blobs are
    addressed by content: the tenant there (if any) does not see the new ones, and those
    no record names once the tenant is in place (or if it never is) are the sweep's to
    remove (:func:`_sweep_after`)."""
    folder = staging.tenant / "storage" / ".blobs"
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        objects.add_blob(entry.name, Path(entry.path))
        os.unlink(entry.path)


def _forget_unmade(home: TenantHome, slug: str) -> None:
    """Object storage, a restore or clone into a new slot that failed (under its operation
    lock): the files it put in the store go, unless the tenant came to be after all. Not
    raised: a failure leaves garbage under a slug no tenant has."""
    objects = _objects_of(home, slug)
    if objects is None or home.exists(slug):
        return
    try:
        objects.drop_everything()
    except ObjectStoreError:
        log.warning("removing the files of the unmade %s failed", slug, exc_info=True)


def _sweep_after(home: TenantHome, slug: str) -> None:
    """Object storage, after a restore or clone put ``slug`` in place (and let go of its
    operation lock): remove what its records do not name — the replaced tenant's blobs
    and link snapshots — under the storage lock, as the server's sweep does, so that a
    file stored meanwhile through a host is never taken. A failure leaves garbage for
    the next sweep, never a missing byte: logged, not raised."""
    if _objects_of(home, slug) is None:
        return
    from tenantry.tenants import collect_garbage

    outcome = collect_garbage(home, [slug]).get(slug)
    if isinstance(outcome, str):
        log.warning("sweeping %s after putting it in place failed: %s", slug, outcome)


def _restored_config(
    home: TenantHome, staging: Staging, slug: str, original: str, text: str, notes: list[str]
):
    """The config class and module source the tenant gets: the archived one, or for a
    copy, rewritten to its slug (hosts another tenant has are dropped, with a note)."""
    try:
        config_class = load_config_file(_write_config(staging, text), original)
    except TenantConfigError as exc:
        raise OperationFailed("the archived config module: " + "; ".join(exc.problems)) from None
    taken = _taken_hosts(home, config_class.HOSTS, besides=slug)
    if slug == original:
        if taken:
            raise OperationFailed(f"host already used by another tenant: {', '.join(taken)}")
        return config_class, text
    if taken:
        notes.append(f"hosts not carried (another tenant has them): {', '.join(taken)}")
    text = _rewrite_config(text, original, slug, drop_hosts=bool(taken))
    try:
        return load_config_file(_write_config(staging, text), slug), text
    except TenantConfigError as exc:
        raise OperationFailed("; ".join(exc.problems)) from None


def _write_config(staging: Staging, text: str) -> Path:
    path = staging.folder / "config.py"
    path.write_text(text)
    return path


def _count(database: TenantDatabase, table: str) -> int:
    from sqlalchemy import text

    name = f'"{database.schema}".{table}' if database.is_postgres else table
    with database.engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()  # noqa: S608


def _migrate_and_load(
    database: TenantDatabase,
    modules: tuple,
    tables: list[tuple[str, Path]],
    revisions: dict[str, str],
    sequences: dict[str, dict],
    blobs: Path | None = None,
) -> None:
    """Build the schema at the archive's revisions (the platform's, each module's; also
    the tables of modules the tenant had once and disabled, whose data it keeps), load the
    rows, migrate forward. With ``blobs``, every stored file's bytes must be there."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        database.migrate_to(revisions["alembic_version"])
        for module in _modules_with_tables(modules, {name for name, _ in tables}, revisions):
            if module.migrations is not None:
                database.migrate_to(revisions[module.version_table], module)
            else:
                with database.engine.begin() as connection:
                    Base.metadata.create_all(connection, tables=module.tables(), checkfirst=True)
        _load_tables(database, tables, sequences)
        database.upgrade(modules)
        if blobs is not None:
            _check_blobs(database, blobs)
    except CommandError as exc:
        raise OperationFailed(f"the archive's revisions cannot be built here: {exc}") from None
    except SQLAlchemyError as exc:
        raise OperationFailed(f"loading the archived rows failed: {_reason(exc)}") from None


def _modules_with_tables(modules: tuple, names: set[str], revisions: dict[str, str]) -> list:
    """The endpoint modules (not built in) whose tables the archive holds: the tenant's,
    and installed ones it no longer enables."""
    from tenantry.modules import EndpointModuleError, installed_module_names, load_module

    found = {module.key: module for module in modules if not module.is_builtin}
    for name in installed_module_names():
        try:
            module = load_module(name)
        except EndpointModuleError:
            continue
        if not module.is_builtin:
            found.setdefault(module.key, module)

    def archived(module) -> bool:
        if module.migrations is not None:
            return module.version_table in revisions
        return any(table.name in names for table in module.tables())

    return [module for module in found.values() if archived(module)]


def _check_blobs(database: TenantDatabase, blobs: Path) -> None:
    """:raises OperationFailed: a stored file's bytes are not in the archive."""
    from sqlalchemy import text

    name = f'"{database.schema}".stored_files' if database.is_postgres else "stored_files"
    with database.engine.connect() as connection:
        for file, sha256 in connection.execute(text(f"SELECT name, sha256 FROM {name}")):  # noqa: S608
            if not (blobs / sha256).is_file():
                raise OperationFailed(f"the archive lacks the bytes of stored file {file!r}")


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


def _swap_in(
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
    from tenantry.atomic import write_atomically

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
        if not _committed(staging, instance):
            _put_back(staging, instance)
        raise
    (instance / COMMITTED).unlink(missing_ok=True)
    home.record_backend()


def _swap_in_new(
    home: TenantHome, staging: Staging, slug: str, instance: Path, config_text: str
) -> None:
    """The slot is empty (or a tenant lost its folder): the schema renamed into place,
    then the folder (marked until the config module is written), then the config."""
    from tenantry.atomic import write_atomically

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
                _link_or_copy(Path(entry.path), storage.blobs / entry.name)
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


def _rename_schemas(home: TenantHome, aside: dict[str, str], new: str, slug: str) -> None:
    """In one transaction: move each existing schema of ``aside`` to its new name, and
    ``new`` to the tenant's."""
    from sqlalchemy import text

    from tenantry.db import shared_engine

    with shared_engine(home.database_url).begin() as connection:
        for name, moved in aside.items():
            exists = connection.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": name},
            ).first()
            if exists:
                connection.execute(text(f'ALTER SCHEMA "{name}" RENAME TO "{moved}"'))
        connection.execute(text(f'ALTER SCHEMA "{new}" RENAME TO "{schema_name(slug)}"'))


def clone(home: TenantHome, source: str, new: str) -> Restored:
    """A new tenant ``new`` with ``source``'s config, users, files and datasets and a fresh
    SECRET_KEY. ``source``'s writes are held only while its data is read; the files are
    hard links of its blobs (copied where the disk cannot link). On SQLite the database
    file is copied as it is (no migration runs); on PostgreSQL its rows are.

    :raises OperationError: ``new`` is invalid or exists. :raises OperationFailed:
    """
    if not is_valid_slug(new):
        raise OperationError(f"invalid slug {new!r}")
    _require_new_slot(home, new, hint="")
    config_text = home.config_file(source).read_text()
    env_text = with_new_secret_key(home.env_file(source).read_text())
    with operation_lock(home, new), Staging.create(home, new) as staging:
        _require_new_slot(home, new, hint="")  # again: no other operation can take it now
        try:
            storage = TenantStorage(staging.tenant / "storage")
            storage.ensure()
            objects = _objects_of(home, new)
            try:
                if home.database_url:
                    with _snapshot_of(home, source) as snapshot:
                        for sha256 in snapshot.blobs:
                            if objects is not None:
                                snapshot.copy_blob_into(sha256, objects)
                            else:
                                snapshot.copy_blob(sha256, storage.blobs / sha256)
                        tables = _tables_from(snapshot, staging.folder / ".tables")
                    fill = functools.partial(
                        _migrate_and_load,
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
            result = _build(
                home, staging, new, source, config_text, env_text, fill, False, recorded
            )
        except BaseException:
            _forget_unmade(home, new)
            raise
    database = tenant_database(home, new)
    try:
        result.files = _count(database, "stored_files")
    finally:
        database.dispose()
    _sweep_after(home, new)
    return result


@contextlib.contextmanager
def _snapshot_of(home: TenantHome, slug: str) -> Iterator[Snapshot]:
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


def _link_or_copy(source: Path, target: Path) -> None:
    """:func:`tenantry.storage.link_or_copy`, where a blob already there is the same one
    (a blob's name is its sha256)."""
    with contextlib.suppress(FileExistsError):
        link_or_copy(source, target)


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
    import sqlite3

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
                    _link_or_copy(storage.stored_path(name, sha256), blobs / sha256)
                else:
                    storage.copy_blob_to(objects, sha256, size)
        finally:
            source.close()
            copy.close()


def _finish_copy(database: TenantDatabase, modules: tuple) -> None:
    """Drop from a copied database what a copy does not carry; bring it up to date."""
    from sqlalchemy import text

    with database.engine.begin() as connection:
        for table in sorted(SKIPPED_TABLES):
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (our names)
        connection.execute(
            text("DELETE FROM revoked_tokens WHERE expires_at <= :now"), {"now": time.time()}
        )
    database.ensure_current(modules)


# -- delete --------------------------------------------------------------------------------


def delete(home: TenantHome, slug: str, keep_backup: bool = True) -> Path | None:
    """Remove the tenant: its config module (the server lets go of it within 1 s), its
    instance folder and its database or schema; first, unless ``keep_backup`` is False,
    an archive of it in ``tenants/.trash/`` (returned). A failed backup removes nothing,
    and neither does a schema that cannot be dropped. Writes are held throughout.

    :raises OperationFailed: the backup failed, or the schema could not be dropped.
    """
    from sqlalchemy.exc import SQLAlchemyError

    archive = None
    instance = home.instance_dir(slug)
    with operation_lock(home, slug), writes_held(home, slug):  # one hold: backup to removal
        if keep_backup:
            trash = home.tenants_dir / TRASH
            trash.mkdir(mode=PRIVATE_DIR, exist_ok=True)
            archive = _free_name(trash, default_archive_name(slug))
            _backup(home, slug, archive, with_files=True, hold=False)
        with Staging.create(home, slug, kind="delete") as staging:
            # Out of sight in two renames (gc finishes a delete killed after the first)
            os.rename(home.config_file(slug), staging.folder / "config.py")
            moved = instance.exists()
            if moved:
                os.rename(instance, staging.folder / "old")
            try:
                if home.database_url:
                    _drop_schema(home, schema_name(slug))
            except SQLAlchemyError as exc:
                if moved:
                    os.rename(staging.folder / "old", instance)
                os.rename(staging.folder / "config.py", home.config_file(slug))
                raise OperationFailed(
                    f"dropping the schema of {slug} failed ({_reason(exc)}): nothing was removed"
                ) from None
        HostIndex(home).refresh()
        _drop_objects(home, slug)
    return archive


def _drop_objects(home: TenantHome, slug: str) -> None:
    """Object storage: the deleted tenant's objects go too (its archive, if kept, has
    them). :raises OperationFailed: the store refused (the tenant is gone; its objects
    stay until a delete or restore of the slug removes them)."""
    objects = _objects_of(home, slug)
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


def _reason(exc: Exception) -> str:
    """What went wrong, in one line, without the statement or its values."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}"[:300]
