"""A tenant's stored files: bytes in its storage root, size and sha256 in its database."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import BigInteger, DateTime, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.endpoint import Base, OverQuota, TenantDatabase, TenantStorage

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


def list_files(database: TenantDatabase) -> list[FileRecord]:
    with database.transaction() as session:
        return list(
            session.scalars(select(FileRecord).order_by(database.by_bytes(FileRecord.name)))
        )


def find_file(database: TenantDatabase, name: str) -> FileRecord | None:
    with database.transaction() as session:
        return session.get(FileRecord, name)


def used_bytes(database: TenantDatabase) -> int:
    with database.transaction() as session:
        return session.scalar(select(func.coalesce(func.sum(FileRecord.size), 0)))


def store_file(
    database: TenantDatabase,
    storage: TenantStorage,
    name: str,
    chunks: Iterable[bytes],
    max_size: int,
    quota: int,
) -> tuple[FileRecord, bool]:
    """Stream an upload in, then, under the storage lock, check the quota again (so
    concurrent uploads cannot pass it together), add the bytes as the blob of their sha256
    and point the file's record at it in one transaction.

    The record changes only once the new bytes are in place, and the old bytes go only
    once the record no longer names them: if the record cannot be written, the file is
    exactly as it was (and the new blob is removed again).

    :returns: the record and whether the file is new.
    :raises InvalidName: :raises TooLarge: :raises OverQuota:
    """
    storage.path_of(name)
    first_bound = _room(database, find_file(database, name), quota)
    received = storage.receive(chunks, max_size=max_size, room=first_bound)
    try:
        with storage.lock():
            existing = find_file(database, name)
            if received.size > _room(database, existing, quota):
                raise OverQuota("The upload would exceed this tenant's storage quota.")
            created = storage.commit(received)
            values = {
                "size": received.size,
                "sha256": received.sha256,
                "modified": datetime.now(UTC),
            }
            try:
                with database.transaction() as session:
                    session.execute(
                        database.insert(FileRecord)
                        .values(name=name, **values)
                        .on_conflict_do_update(index_elements=[FileRecord.name], set_=values)
                    )
            except BaseException:
                if created:  # no record can name it: records change only under this lock
                    storage.drop_blob(received.sha256)
                raise
            if existing is not None and existing.sha256 != received.sha256:
                _drop_if_unused(database, storage, existing.sha256)
            storage.drop_legacy(name)
    finally:
        storage.discard(received)
    return FileRecord(name=name, **values), existing is None


def _drop_if_unused(database: TenantDatabase, storage: TenantStorage, sha256: str) -> None:
    """Remove the bytes of a sha256 when no stored file names them (under the lock)."""
    with database.transaction() as session:
        query = select(func.count()).select_from(FileRecord).where(FileRecord.sha256 == sha256)
        if not session.scalar(query):
            storage.drop_blob(sha256)


def stored_bytes(
    database: TenantDatabase,
    storage: TenantStorage,
    name: str,
    use: Callable[[FileRecord, Path], T],
) -> T:
    """``use(record, path)`` with the file's record and the path of the bytes it names.

    Blobs never change, so the path always holds the bytes the record describes; a replace
    or delete between reading the record and opening the path only removes the blob, and
    then the record is read again.

    :raises FileNotFoundError: no such file.
    """
    for _attempt in range(5):
        record = find_file(database, name)
        if record is None:
            break
        try:
            return use(record, storage.stored_path(name, record.sha256))
        except FileNotFoundError:
            continue
    raise FileNotFoundError(name)


def _room(database: TenantDatabase, existing: FileRecord | None, quota: int) -> int:
    """Bytes the quota leaves for a file replacing ``existing`` (whose size is given back)."""
    return quota - used_bytes(database) + (existing.size if existing else 0)


class FileInUse(Exception):
    """Something refers to the file; ``references`` says what (e.g. ``dataset q3``)."""

    def __init__(self, name: str, references: list[str]):
        super().__init__(f"File {name} is in use by {', '.join(references)}")
        self.references = references


def delete_file(
    database: TenantDatabase,
    storage: TenantStorage,
    name: str,
    references: Callable[[str], list[str]],
) -> bool:
    """Forget and remove a stored file; whether it existed. ``references(name)`` says what
    refers to the file (the tenant's modules answer it; see ``Tenant.file_references``).

    :raises InvalidName: :raises FileInUse: something refers to it.
    """
    storage.path_of(name)
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
        _drop_if_unused(database, storage, record.sha256)
        storage.drop_legacy(name)
    return True
