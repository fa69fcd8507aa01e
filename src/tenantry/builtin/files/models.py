"""A tenant's stored files: bytes in its storage root, size and sha256 in its database, and
the storage quota, which counts every byte the tenant holds: stored files, snapshots of
one-time links (dataset zips too) and uploads in progress."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import IO, TypeVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Integer,
    Select,
    String,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.builtin.links.models import OneTimeLink, drop_orphans, link_file, quietly
from tenantry.endpoint import (
    Base,
    InvalidName,
    OverQuota,
    Storage,
    TenantDatabase,
    audit,
    validate_name,
)

# A reservation a killed worker never released stops counting after this long (the same
# age at which its temp file counts as a left-over).
RESERVATION_SECONDS = 6 * 3600
# Orphans looked at again (and removed) per hold of the storage lock.
ORPHAN_BATCH = 200

T = TypeVar("T")


class FileRecord(Base):
    __tablename__ = "stored_files"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def modified_utc(self) -> datetime:
        # SQLite hands back naive datetimes; they were stored as UTC.
        return self.modified.replace(tzinfo=UTC) if self.modified.tzinfo is None else self.modified

    def summary(self) -> dict:
        return {
            "name": self.name,
            "size": self.size,
            "modified": self.modified_utc.isoformat().replace("+00:00", "Z"),
        }

    def info(self) -> dict:
        return {**self.summary(), "sha256": self.sha256}


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_row(table: str, row: dict) -> str | None:
    """What is wrong with a stored file's row an archive brings: its name, as an upload's
    would be checked; its sha256, the name of its blob (never a path); its size."""
    if table != FileRecord.__tablename__:
        return None
    try:
        validate_name(row.get("name"))
    except InvalidName:
        return f"name {str(row.get('name'))[:60]!r} is not a file name"
    if not isinstance(row.get("sha256"), str) or not SHA256_HEX.fullmatch(row["sha256"]):
        return f"sha256 {str(row.get('sha256'))[:70]!r} is not a sha256"
    if not isinstance(row.get("size"), int) or row["size"] < 0:
        return "size must be a whole number of bytes"
    return None


def list_files(database: TenantDatabase) -> list[FileRecord]:
    with database.transaction() as session:
        return list(
            session.scalars(select(FileRecord).order_by(database.by_bytes(FileRecord.name)))
        )


def find_file(database: TenantDatabase, name: str) -> FileRecord | None:
    with database.transaction() as session:
        return session.get(FileRecord, name)


class UploadReservation(Base):
    """Bytes an upload in progress (or a zip being built) holds against the quota."""

    __tablename__ = "upload_reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


def used_bytes(database: TenantDatabase, excluding: int | None = None) -> int:
    """Every byte the tenant holds against its quota: stored files, snapshots of links
    not yet removed (dataset zips among them) and live reservations (but ``excluding``)."""
    now = time.time()
    reserved = select(func.coalesce(func.sum(UploadReservation.size), 0)).where(
        UploadReservation.expires_at > now, UploadReservation.id != (excluding or 0)
    )
    with database.transaction() as session:
        return (
            session.scalar(select(func.coalesce(func.sum(FileRecord.size), 0)))
            + session.scalar(
                select(func.coalesce(func.sum(OneTimeLink.size), 0)).where(
                    OneTimeLink.used.is_(False)
                )
            )
            + session.scalar(reserved)
        )


def stats(database: TenantDatabase, tables: set[str]) -> dict:
    """The module's figures for ``tenants stats``: ``files``, ``bytes`` (its stored files)
    and ``quota_used`` (every byte the quota counts), each where its tables exist."""
    figures = {}
    with database.transaction() as session:
        if FileRecord.__tablename__ in tables:
            figures["files"] = session.scalar(select(func.count()).select_from(FileRecord))
            total = session.scalar(select(func.coalesce(func.sum(FileRecord.size), 0)))
            figures["bytes"] = int(total)  # PostgreSQL sums to a Decimal
    if {FileRecord.__tablename__, "one_time_links", "upload_reservations"} <= tables:
        figures["quota_used"] = int(used_bytes(database))
    return figures


def room_left(database: TenantDatabase, quota: int, excluding: int | None = None) -> int:
    """Bytes the quota leaves now (call under the storage lock for a decision)."""
    return quota - used_bytes(database, excluding=excluding)


def reserve(
    database: TenantDatabase, storage: Storage, size: int, quota: int, give_back: int = 0
) -> int:
    """Hold ``size`` bytes of the quota for work in progress (an upload of that declared
    size, a zip being built) if the quota has room, counting ``give_back`` bytes that the
    work will free (a replaced file's); returns the reservation, for :func:`release`.

    :raises OverQuota:
    """
    with storage.lock():
        if size > room_left(database, quota) + give_back:
            raise OverQuota("This would exceed the tenant's storage quota.")
        reservation = UploadReservation(size=size, expires_at=time.time() + RESERVATION_SECONDS)
        with database.transaction() as session:
            session.add(reservation)
            session.flush()
            return reservation.id


def release(database: TenantDatabase, reservation: int) -> None:
    with database.transaction() as session:
        session.execute(delete(UploadReservation).where(UploadReservation.id == reservation))


def sweep(database: TenantDatabase, storage: Storage) -> int:
    """Forget expired reservations, remove temp files of uploads that died and blobs no
    file names; returns how many files went."""
    with database.transaction() as session:
        expired = UploadReservation.expires_at <= time.time()
        session.execute(delete(UploadReservation).where(expired))
    return storage.sweep_incoming() + drop_orphan_blobs(database, storage)


def store_file(
    database: TenantDatabase,
    storage: Storage,
    name: str,
    chunks: Iterable[bytes],
    max_size: int,
    quota: int,
    declared: int | None = None,
) -> tuple[FileRecord, bool]:
    """Reserve the upload's declared size on the quota, stream it in, then, under the
    storage lock, check the quota again (so concurrent uploads cannot pass it together),
    add the bytes as the blob of their sha256 and point the file's record at it in one
    transaction.

    The record changes only once the new bytes are in place, and the old bytes go only
    once the record no longer names them: if the record cannot be written, the file is
    exactly as it was (and the new blob is removed again).

    :returns: the record and whether the file is new.
    :raises InvalidName: :raises TooLarge: :raises OverQuota:
    """
    validate_name(name)
    before = find_file(database, name)
    give_back = before.size if before else 0
    reservation = reserve(database, storage, declared or 0, quota, give_back)
    try:
        room = room_left(database, quota, excluding=reservation) + give_back
        if declared is None:  # a chunked upload: its reservation grows as its bytes arrive
            chunks = _reserving(chunks, database, storage, reservation, quota, give_back)
        received = storage.receive(chunks, max_size=max_size, room=room)
        try:
            with storage.lock():
                existing = find_file(database, name)
                room = room_left(database, quota, excluding=reservation)
                if received.size > room + (existing.size if existing else 0):
                    raise OverQuota("The upload would exceed this tenant's storage quota.")
                values = _commit(database, storage, name, received, existing)
        finally:
            quietly(partial(storage.discard, received), "an upload's received bytes")
    finally:
        release(database, reservation)
    return FileRecord(name=name, **values), existing is None


# A chunked upload's reservation grows by this much at a time (a look at the quota, under
# the storage lock, per step).
RESERVE_STEP = 1024 * 1024


def _reserving(chunks, database, storage, reservation: int, quota: int, give_back: int):
    """``chunks`` as they arrive, each byte reserved on the quota before it is passed on,
    so concurrent uploads without a declared size cannot pass the quota together.

    :raises OverQuota: the next bytes would pass it.
    """
    size = reserved = 0
    for chunk in chunks:
        size += len(chunk)
        if size > reserved:
            reserved = grow(database, storage, reservation, size, quota, give_back)
        yield chunk


def grow(
    database: TenantDatabase, storage: Storage, reservation: int, size: int, quota, give_back
) -> int:
    """Grow a reservation to hold at least ``size`` bytes (a step more where the quota has
    room); returns what it holds now. :raises OverQuota:"""
    with storage.lock():
        room = room_left(database, quota, excluding=reservation) + give_back
        if size > room:
            raise OverQuota("The upload would exceed this tenant's storage quota.")
        held = min(size + RESERVE_STEP, room)
        with database.transaction() as session:
            session.execute(
                update(UploadReservation)
                .where(UploadReservation.id == reservation)
                .values(size=held)
            )
        return held


def _commit(database, storage, name: str, received, existing: FileRecord | None) -> dict:
    """Put received bytes in as ``name`` (under the storage lock); the record's values."""
    created = storage.commit(received)
    values = {"size": received.size, "sha256": received.sha256, "modified": datetime.now(UTC)}
    try:
        with database.transaction() as session:
            session.execute(
                database.insert(FileRecord)
                .values(name=name, **values)
                .on_conflict_do_update(index_elements=[FileRecord.name], set_=values)
            )
            audit(session, "file.put", name)
    except BaseException:
        if created:  # no record can name it: records change only under this lock
            storage.drop_blob(received.sha256)
        raise
    if existing is not None and existing.sha256 != received.sha256:
        _drop_if_unused(database, storage, existing.sha256)
    quietly(partial(storage.drop_legacy, name), f"the old copy of {name!r}")
    return values


def link_stored_file(
    database: TenantDatabase,
    storage: Storage,
    name: str,
    download: bool,
    ttl: int,
    quota: int,
):
    """A one-time link to the file's bytes as they are now. Its snapshot pins those bytes
    until it is used or swept, so it counts on the quota.

    :raises FileNotFoundError: no such file. :raises OverQuota:
    """
    with storage.lock():

        def make_link(record: FileRecord):
            if record.size > room_left(database, quota):
                raise OverQuota("A link would exceed this tenant's storage quota.")
            return link_file(database, storage, record.sha256, record.size, name, download, ttl)

        return stored_bytes(database, name, make_link)


def _drop_if_unused(database: TenantDatabase, storage: Storage, sha256: str) -> None:
    """Remove the bytes of a sha256 when no stored file names them (under the lock)."""
    with database.transaction() as session:
        query = select(func.count()).select_from(FileRecord).where(FileRecord.sha256 == sha256)
        unused = not session.scalar(query)
    if unused:
        quietly(partial(storage.drop_blob, sha256), f"blob {sha256}")


def _named_blobs(sha256s: list[str] | None) -> Select:
    query = select(FileRecord.sha256).distinct()
    return query if sha256s is None else query.where(FileRecord.sha256.in_(sha256s))


def drop_orphan_blobs(database: TenantDatabase, storage: Storage) -> int:
    """Remove the blobs no stored file names (left where a removal failed); returns how
    many. An upload adds its blob and its record under the storage lock."""
    held = storage.blob_names()
    return drop_orphans(database, storage, held, _named_blobs, storage.drop_blob, ORPHAN_BATCH)


def stored_bytes(database: TenantDatabase, name: str, use: Callable[[FileRecord], T]) -> T:
    """``use(record)`` with the file's current record, whose bytes ``use`` reaches through
    the storage (:func:`open_stored` or a snapshot).

    Blobs never change, so a blob always holds the bytes its record describes; a replace
    or delete between reading the record and using its blob only removes the blob (``use``
    raises FileNotFoundError), and then the record is read again.

    :raises FileNotFoundError: no such file.
    """
    for _attempt in range(5):
        record = find_file(database, name)
        if record is None:
            break
        try:
            return use(record)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(name)


def open_stored(storage: Storage, record: FileRecord) -> IO[bytes]:
    """The bytes ``record`` describes, open for reading (the caller closes them).

    :raises FileNotFoundError: replaced or deleted meanwhile (see :func:`stored_bytes`).
    """
    return storage.open_blob(record.sha256, record.size, record.name)


class FileInUse(Exception):
    """Something refers to the file; ``references`` says what (e.g. ``dataset q3``)."""

    def __init__(self, name: str, references: list[str]):
        super().__init__(f"File {name} is in use by {', '.join(references)}")
        self.references = references


def delete_file(
    database: TenantDatabase,
    storage: Storage,
    name: str,
    references: Callable[[str], list[str]],
) -> bool:
    """Forget and remove a stored file; whether it existed. ``references(name)`` says what
    refers to the file (the tenant's modules answer it; see ``Tenant.file_references``).

    :raises InvalidName: :raises FileInUse: something refers to it.
    """
    validate_name(name)
    # Under the storage lock: what refers to files takes it too (a dataset created
    # meanwhile cannot list a file going away).
    with storage.lock():
        listing = references(name)
        if listing:
            raise FileInUse(name, listing)
        record = find_file(database, name)
        if record is None:
            return False
        with database.transaction() as session:
            session.execute(delete(FileRecord).where(FileRecord.name == name))
            audit(session, "file.delete", name)
        _drop_if_unused(database, storage, record.sha256)
        storage.drop_legacy(name)
    return True
