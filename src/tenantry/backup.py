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

from tenantry import __version__
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
from tenantry.config import TenantConfigError, is_valid_slug, tenant_modules
from tenantry.config_loader import load_config_file
from tenantry.db import TenantDatabase, tenant_database
from tenantry.home import WRITES_HELD_HEARTBEAT, TenantHome
from tenantry.hosts import HostIndex
from tenantry.locking import file_lock_if_free
from tenantry.storage import PRIVATE_DIR, PRIVATE_FILE, TenantStorage
from tenantry.tenant_secrets import new_secret_key
from tenantry.tenants import WSGI_MODULE, OperationFailed, TenantError, _class_name, _literal

# Rows a copy of the tenant need not carry: lock-outs, quota reservations of uploads in
# progress, one-time links (their snapshots are not carried either).
SKIPPED_TABLES = frozenset(("login_failures", "upload_reservations", "one_time_links"))
VERSION_TABLES = re.compile(r"alembic_version(_[a-z0-9_]+)?")
BATCH = 1000
SPOOL_BYTES = 8 * 1024 * 1024
STAGING_PREFIX = ".restore-"
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
    pins: Path | None = None
    rows: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        for _name, spool, _entry in self.tables:
            spool.close()
        if self.pins is not None:
            shutil.rmtree(self.pins, ignore_errors=True)


# -- holding writes, and one operation per tenant at a time --------------------------------


@contextlib.contextmanager
def operation_lock(home: TenantHome, slug: str) -> Iterator[None]:
    """One backup, restore, clone or delete of a tenant at a time, across processes.

    :raises OperationError: another one runs.
    """
    folder = home.tenants_dir / LOCKS
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT
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

    storage = TenantStorage(home.instance_dir(slug) / "storage")
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
                if (
                    VERSION_TABLES.fullmatch(name)
                    or TABLE_MEMBER.fullmatch(f"database/{name}.jsonl") is None
                ):
                    continue
                query = select(table)
                if name == "revoked_tokens":  # a revoked token that expired needs no record
                    query = query.where(table.c.expires_at > now)
                if name == "stored_files" and not with_files:
                    continue
                snapshot.tables.append(_spool_table(connection, table, query, snapshot))
            if with_files:
                snapshot.pins = _pin_blobs(storage, snapshot)
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


def _pin_blobs(storage: TenantStorage, snapshot: Snapshot) -> Path:
    """Hard-link every blob the snapshot names into a folder of its own (under the
    storage lock): later replaces and deletes cannot take those bytes away."""
    pins = storage.root / PINS / secrets.token_hex(8)
    pins.mkdir(mode=PRIVATE_DIR, parents=True)
    names = snapshot.names
    for sha256 in snapshot.blobs:
        source = storage.stored_path(names[sha256], sha256)
        try:
            os.link(source, pins / sha256)
        except FileNotFoundError:
            raise OperationFailed(
                f"the bytes of stored file {names[sha256]!r} are missing from the storage"
            ) from None
        except OSError:
            shutil.copyfile(source, pins / sha256)
    return pins


def _load_tables(
    database: TenantDatabase, tables: list[tuple[str, Path]], sequences: dict[str, dict]
) -> None:
    """Insert the rows of each JSON-lines table file into the (migrated, empty) database,
    parents before children, in one transaction."""
    from sqlalchemy import func, select, text

    with database.engine.begin() as connection:
        metadata = _reflect(connection, database.schema)
        by_name = {table.name: table for table in metadata.sorted_tables}
        order = {table.name: index for index, table in enumerate(metadata.sorted_tables)}
        for name, _path in tables:
            if name not in by_name:
                raise OperationFailed(f"the archive holds table {name}, which this tenant lacks")
        for name, path in sorted(tables, key=lambda item: order[item[0]]):
            _load_table(connection, by_name[name], path)
        for name, counter in sequences.items():
            table = by_name.get(name)
            if table is None or counter.get("column") not in table.c:
                continue
            column = table.c[counter["column"]]
            highest = max(
                int(counter.get("value") or 0),
                connection.execute(select(func.max(column))).scalar() or 0,
            )
            if highest <= 0:
                continue
            if database.is_postgres:
                connection.execute(
                    text("SELECT setval(pg_get_serial_sequence(:table, :column), :value)"),
                    {
                        "table": f'"{database.schema}"."{name}"',
                        "column": column.name,
                        "value": highest,
                    },
                )
            else:
                # sqlite_sequence has no key: update the row the inserts made, if any
                updated = connection.exec_driver_sql(
                    "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (highest, name)
                )
                if not updated.rowcount:
                    connection.exec_driver_sql(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, highest)
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
            except (ValueError, TypeError) as exc:
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


def backup(home: TenantHome, slug: str, out: Path | None = None, with_files: bool = True) -> Path:
    """Write the tenant's archive to ``out`` (a file, or a folder for the default name;
    default: the current folder); returns its path. The archive appears under its name
    only once complete (mode 0600); an existing file is never overwritten.

    :raises OperationError: the target exists. :raises OperationFailed: a write failed.
    """
    target = _archive_target(slug, out)
    with operation_lock(home, slug):
        _backup(home, slug, target, with_files)
    return target


def _backup(home: TenantHome, slug: str, target: Path, with_files: bool) -> None:
    """Write the archive, holding the tenant's writes (operation lock held)."""
    database = tenant_database(home, slug)
    try:
        with writes_held(home, slug):
            snapshot = take_snapshot(home, slug, database, with_files)
            try:
                _write_archive(home, slug, snapshot, target, with_files)
            finally:
                snapshot.close()
    finally:
        database.dispose()


def _archive_target(slug: str, out: Path | None) -> Path:
    target = Path(out) if out is not None else Path.cwd()
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
                    with open(snapshot.pins / sha256, "rb") as blob:
                        writer.add(f"files/{sha256}", blob)
                writer.close()
            out.flush()
            os.fsync(out.fileno())
        os.link(temp, target)  # never over a file that appeared meanwhile
    except FileExistsError:
        raise OperationError(f"{target} appeared meanwhile: choose another --out") from None
    except ArchiveError as exc:
        raise OperationFailed(str(exc)) from None
    except OSError as exc:
        raise OperationFailed(f"writing {target} failed: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)


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


@dataclass
class Staging:
    """A tenant built aside: its folder under ``tenants/`` and, on PostgreSQL, its schema."""

    home: TenantHome
    folder: Path
    schema: str | None
    lock: object = None

    @classmethod
    @contextlib.contextmanager
    def create(cls, home: TenantHome) -> Iterator[Staging]:
        """A fresh staging folder (removed, with its schema, unless :meth:`keep` ran)."""
        token = secrets.token_hex(6)
        folder = home.tenants_dir / f"{STAGING_PREFIX}{token}"
        home.tenants_dir.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=PRIVATE_DIR)
        schema = f"tenantry_restore_{token}" if home.database_url else None
        if schema:
            (folder / "schema").write_text(schema + "\n")
        staging = cls(home, folder, schema)
        try:
            with file_lock_if_free(folder / ".lock"):  # gc leaves a held staging alone
                yield staging
        finally:
            staging.remove()

    def database(self, slug: str) -> TenantDatabase:
        return TenantDatabase(slug, self.folder, self.home.database_url, schema=self.schema)

    def remove(self) -> None:
        if self.schema:
            with contextlib.suppress(Exception):
                database = self.database("staging")
                database.drop_schema()
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_stale_staging(home: TenantHome) -> int:
    """Remove what killed restores and clones left aside (folders nobody holds, and their
    schemas) and pins of killed backups; returns how many."""
    removed = 0
    if not home.tenants_dir.is_dir():
        return 0
    for entry in os.scandir(home.tenants_dir):
        if not entry.name.startswith(STAGING_PREFIX) or not entry.is_dir():
            continue
        folder = Path(entry.path)
        with contextlib.suppress(OSError), file_lock_if_free(folder / ".lock") as free:
            if not free:
                continue
            schema = None
            with contextlib.suppress(OSError):
                schema = (folder / "schema").read_text().strip()
            Staging(home, folder, schema if home.database_url else None).remove()
            removed += 1
    return removed


def remove_stale_pins(home: TenantHome, slug: str) -> int:
    """Remove the pins of backups that did not end (killed), unless one runs now."""
    storage = TenantStorage(home.instance_dir(slug) / "storage")
    if not (storage.root / PINS).is_dir():
        return 0
    folder = home.tenants_dir / LOCKS
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    removed = 0
    with file_lock_if_free(folder / f"{slug}.lock") as free:
        if free:
            for entry in os.scandir(storage.root / PINS):
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

    old_slug = re.escape(_literal(old))
    text = replace(rf"^(\s+)SLUG = {old_slug}\s*$", rf"\1SLUG = {_literal(new)}", source)
    text = replace(
        rf"^(\s+)NAME = {re.escape(_literal(old))}\s*$",
        rf"\1NAME = {_literal(new)}",
        text,
        required=False,
    )
    text = replace(
        rf"^class {_class_name(old)}\(", f"class {_class_name(new)}(", text, required=False
    )
    if drop_hosts:
        text = replace(r"^(\s+)HOSTS = .*$", r"\1HOSTS = ()", text)
    return text


def _fresh_env(text: str) -> str:
    lines = [
        line for line in text.splitlines() if not re.match(r"\s*(export\s+)?SECRET_KEY\s*=", line)
    ]
    return "\n".join([*lines, f"SECRET_KEY={new_secret_key()}"]) + "\n"


def _taken_hosts(home: TenantHome, hosts, besides: str) -> list[str]:
    index = HostIndex(home, persist=False)
    index.refresh()
    return sorted(h for h in hosts if any(slug != besides for slug in index.claims.get(h, ())))


def _require_new_slot(home: TenantHome, slug: str) -> None:
    if home.config_file(slug).exists() or home.instance_dir(slug).exists():
        raise OperationError(f"tenant {slug!r} already exists: --force replaces it")
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
        cannot be opened. :raises OperationFailed: the archive is bad or too new; nothing
        of any tenant changed.
    """
    if as_slug is not None and not is_valid_slug(as_slug):
        raise OperationError(f"invalid slug {as_slug!r}")
    try:
        source = open(archive, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise OperationError(f"{archive} cannot be read: {exc.strerror or exc}") from None
    with source:
        try:
            reader = ArchiveReader(source)
        except ArchiveError as exc:
            raise OperationFailed(f"{archive}: {exc}") from None
        with reader:
            manifest = reader.manifest
            original = manifest.get("slug")
            if not isinstance(original, str) or not is_valid_slug(original):
                raise OperationFailed(f"{archive}: the manifest names no valid slug")
            slug = as_slug or original
            exists = home.exists(slug)
            if not (force and exists):
                _require_new_slot(home, slug)
            revisions = _check_revisions(manifest.get("revisions"))
            free = shutil.disk_usage(
                home.tenants_dir if home.tenants_dir.exists() else home.root
            ).free
            if reader.total_size + DISK_MARGIN > free:
                raise OperationFailed(
                    f"{archive}: restoring needs {reader.total_size} bytes; "
                    f"the disk has {free} free"
                )
            home.tenants_dir.mkdir(parents=True, exist_ok=True)
            replacing = exists and force
            # A write to the tenant being replaced would be lost with it: held from the start.
            holding = writes_held(home, slug) if replacing else contextlib.nullcontext()
            with operation_lock(home, slug), holding, Staging.create(home) as staging:
                try:
                    tables, config, env = _extract(reader, staging)
                except ArchiveError as exc:
                    raise OperationFailed(f"{archive}: {exc}") from None
                except OSError as exc:
                    raise OperationFailed(f"restoring failed: {exc.strerror or exc}") from None
                notes = []
                copy = slug != original
                env_text = env.decode()
                if copy:
                    env_text = _fresh_env(env_text)
                config_text = config.decode()
                result = _build(
                    home,
                    staging,
                    slug,
                    original,
                    config_text,
                    env_text,
                    functools.partial(
                        _migrate_and_load,
                        tables=tables,
                        revisions=revisions,
                        sequences=manifest.get("sequences") or {},
                    ),
                    notes,
                    replacing,
                )
                rows = manifest.get("rows")
                result.files = rows.get("stored_files", 0) if isinstance(rows, dict) else 0
                return result


def _extract(reader: ArchiveReader, staging: Staging):
    """Stream every member into the staging folder, checking each; returns the table
    files, the config module and the .env. :raises ArchiveError:"""
    blobs = staging.folder / "storage" / ".blobs"
    TenantStorage(staging.folder / "storage").ensure()
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
            path = tables_dir / f"{table.group(1)}.jsonl"
            tables.append((table.group(1), path))
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
    notes: list[str],
    replacing: bool,
) -> Restored:
    """Finish the tenant in ``staging`` (config, .env; its database made by ``fill``,
    given the database and the config's modules) and swap it in."""
    try:
        config_class = load_config_file(_write_config(staging, config_text), original)
    except TenantConfigError as exc:
        raise OperationFailed("the archived config module: " + "; ".join(exc.problems)) from None
    if slug != original:
        taken = _taken_hosts(home, config_class.HOSTS, besides=slug)
        if taken:
            notes.append(f"hosts not carried (another tenant has them): {', '.join(taken)}")
        config_text = _rewrite_config(config_text, original, slug, drop_hosts=bool(taken))
        try:
            config_class = load_config_file(_write_config(staging, config_text), slug)
        except TenantConfigError as exc:
            raise OperationFailed("; ".join(exc.problems)) from None
    else:
        taken = _taken_hosts(home, config_class.HOSTS, besides=slug)
        if taken:
            raise OperationFailed(f"host already used by another tenant: {', '.join(taken)}")
    try:
        modules = tenant_modules(config_class)
    except TenantConfigError as exc:
        raise OperationFailed("; ".join(exc.problems)) from None
    (staging.folder / ".env").write_text(env_text)
    os.chmod(staging.folder / ".env", PRIVATE_FILE)
    (staging.folder / "wsgi.py").write_text(WSGI_MODULE.format(slug=slug))
    database = staging.database(slug)
    try:
        fill(database, modules)
        users = _count(database, "users")
    finally:
        database.dispose()
    shutil.rmtree(staging.folder / ".tables", ignore_errors=True)
    _swap_in(home, staging, slug, config_text, replacing)
    return Restored(slug, users, 0, notes)


def _write_config(staging: Staging, text: str) -> Path:
    path = staging.folder / "config.py"
    path.write_text(text)
    return path


def _count(database: TenantDatabase, table: str) -> int:
    from sqlalchemy import text

    name = f'"{database.schema}".{table}' if database.is_postgres else table
    with database.engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()  # noqa: S608


def _migrate_and_load(database, modules, tables, revisions, sequences) -> None:
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from tenantry.db import Base

    try:
        database.migrate_to(revisions["alembic_version"])
        for module in modules:
            if module.is_builtin:
                continue
            if module.migrations is not None:
                if module.version_table in revisions:
                    database.migrate_to(revisions[module.version_table], module)
            elif module.tables():
                with database.engine.begin() as connection:
                    Base.metadata.create_all(connection, tables=module.tables(), checkfirst=True)
        _load_tables(database, tables, sequences)
        database.upgrade(modules)
    except CommandError as exc:
        raise OperationFailed(f"the archive's revisions cannot be built here: {exc}") from None
    except SQLAlchemyError as exc:
        raise OperationFailed(
            f"loading the archived rows failed: {type(exc).__name__}: {str(exc)[:300]}"
        ) from None


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
    """Put the tenant built in ``staging`` in place of ``slug`` (replacing the one there)."""
    from sqlalchemy import text

    from tenantry.atomic import write_atomically
    from tenantry.db import schema_name

    instance = home.instance_dir(slug)
    for name in ("config.py", "schema", ".lock"):  # the staging's own, not the tenant's
        (staging.folder / name).unlink(missing_ok=True)
    if not replacing:
        if staging.schema:
            with staging.database(slug).engine.begin() as connection:
                connection.execute(
                    text(f'ALTER SCHEMA "{staging.schema}" RENAME TO "{schema_name(slug)}"')
                )
            staging.schema = None
        os.rename(staging.folder, instance)
        staging.folder = instance.with_name(instance.name + ".gone")  # nothing left to remove
        home.config_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(home.config_file(slug), config_text)
        home.record_backend()
        return
    for marker in ("disabled", "maintenance"):  # the deployment's state, not the data's
        with contextlib.suppress(FileNotFoundError):
            shutil.copy2(instance / marker, staging.folder / marker)
    with writes_held(home, staging.folder):  # the tenant's own: held by restore()
        if staging.schema:
            old = f"tenantry_old_{secrets.token_hex(6)}"
            with staging.database(slug).engine.begin() as connection:
                connection.execute(text(f'ALTER SCHEMA "{schema_name(slug)}" RENAME TO "{old}"'))
                connection.execute(
                    text(f'ALTER SCHEMA "{staging.schema}" RENAME TO "{schema_name(slug)}"')
                )
            staging.schema = old
        if not _exchange(staging.folder, instance):
            aside = staging.folder.with_name(staging.folder.name + "-old")
            os.rename(instance, aside)
            os.rename(staging.folder, instance)
            staging.folder = aside
        # staging.folder now holds the old tenant's files: removed with the staging
        write_atomically(home.config_file(slug), config_text)
        if staging.schema:
            (staging.folder / "schema").write_text(staging.schema + "\n")


def clone(home: TenantHome, source: str, new: str) -> Restored:
    """A new tenant ``new`` with ``source``'s config, users, files and datasets and a fresh
    SECRET_KEY. ``source``'s writes are held only while its data is read; the files are
    hard links of its blobs (copied where the disk cannot link). On SQLite the database
    file is copied as it is (no migration runs); on PostgreSQL its rows are.

    :raises OperationError: ``new`` is invalid or exists. :raises OperationFailed:
    """
    if not is_valid_slug(new):
        raise OperationError(f"invalid slug {new!r}")
    _require_new_slot(home, new)
    config_text = home.config_file(source).read_text()
    env_text = _fresh_env(home.env_file(source).read_text())
    with operation_lock(home, new), Staging.create(home) as staging:
        storage = TenantStorage(staging.folder / "storage")
        storage.ensure()
        if home.database_url:
            snapshot = _snapshot_of(home, source)
            try:
                for sha256 in snapshot.blobs:
                    _link_or_copy(snapshot.pins / sha256, storage.blobs / sha256)
                tables = _tables_from(snapshot, staging.folder / ".tables")
                fill = functools.partial(
                    _migrate_and_load,
                    tables=tables,
                    revisions=snapshot.revisions,
                    sequences=snapshot.sequences,
                )
            finally:
                snapshot.close()
        else:
            _copy_sqlite_tenant(home, source, staging)
            fill = _finish_copy
        result = _build(home, staging, new, source, config_text, env_text, fill, [], False)
    database = tenant_database(home, new)
    try:
        result.files = _count(database, "stored_files")
    finally:
        database.dispose()
    return result


def _snapshot_of(home: TenantHome, slug: str) -> Snapshot:
    database = tenant_database(home, slug)
    try:
        with operation_lock(home, slug), writes_held(home, slug):
            return take_snapshot(home, slug, database)
    finally:
        database.dispose()


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        pass
    except OSError:
        shutil.copyfile(source, target)
        os.chmod(target, PRIVATE_FILE)


def _tables_from(snapshot: Snapshot, folder: Path) -> list[tuple[str, Path]]:
    folder.mkdir(mode=PRIVATE_DIR)
    tables = []
    for name, spool, _entry in snapshot.tables:
        with open(folder / f"{name}.jsonl", "wb") as out:
            shutil.copyfileobj(spool, out, 1024 * 1024)
        tables.append((name, folder / f"{name}.jsonl"))
    return tables


def _copy_sqlite_tenant(home: TenantHome, slug: str, staging: Staging) -> None:
    """Copy the tenant's SQLite database as it is (SQLite's online backup: one moment)
    and link its blobs, under its storage lock and with its writes held."""
    import sqlite3

    storage = TenantStorage(home.instance_dir(slug) / "storage")
    blobs = staging.folder / "storage" / ".blobs"
    target = staging.folder / "tenant.db"
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    with operation_lock(home, slug), writes_held(home, slug), storage.lock():
        source = sqlite3.connect(home.database_file(slug), timeout=30)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            for name, sha256 in copy.execute("SELECT name, sha256 FROM stored_files"):
                _link_or_copy(storage.stored_path(name, sha256), blobs / sha256)
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
    database or schema and its instance folder; first, unless ``keep_backup`` is False,
    an archive of it in ``tenants/.trash/`` (returned). A failed backup removes nothing.

    :raises OperationFailed: the backup failed.
    """
    archive = None
    with operation_lock(home, slug):
        if keep_backup:
            trash = home.tenants_dir / TRASH
            trash.mkdir(mode=PRIVATE_DIR, exist_ok=True)
            archive = _archive_target(slug, trash)
            _backup(home, slug, archive, with_files=True)
        home.config_file(slug).unlink(missing_ok=True)
        database = tenant_database(home, slug)
        try:
            database.drop_schema()
        finally:
            database.dispose()
        instance = home.instance_dir(slug)
        if instance.exists():
            gone = instance.with_name(f"{STAGING_PREFIX}{secrets.token_hex(6)}")
            os.rename(instance, gone)  # one step out of sight, then removed
            shutil.rmtree(gone, ignore_errors=True)
        HostIndex(home).refresh()
    return archive
