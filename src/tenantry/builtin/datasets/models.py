"""The datasets catalogue: named, described groups of a tenant's stored files."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import ForeignKey, Integer, String, Text, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.builtin.files.models import (
    FileRecord,
    open_stored,
    release,
    reserve,
    room_left,
    stored_bytes,
)
from tenantry.builtin.links.models import OneTimeLink, link_built_file
from tenantry.endpoint import (
    Base,
    InvalidName,
    OverQuota,
    Storage,
    Tenant,
    TenantDatabase,
    audit,
    validate_name,
)

RESERVED_NAMES = frozenset({"download"})
MAX_LIMIT = 1000
# Longest list a request may name (files of a dataset, uses, datasets to download): keeps
# every IN (...) far below SQLite's limit on bound parameters.
MAX_ITEMS = 1000


class DatasetError(ValueError):
    """An invalid dataset body or query; the message names the field."""


class UnknownFiles(DatasetError):
    pass


class DatasetExists(Exception):
    pass


class UnknownDataset(LookupError):
    pass


class Dataset(Base):
    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str] = mapped_column(Text)


class DatasetUse(Base):
    __tablename__ = "dataset_uses"

    dataset: Mapped[str] = mapped_column(
        String(255), ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True
    )
    use: Mapped[str] = mapped_column(String(255), primary_key=True)


class DatasetFile(Base):
    __tablename__ = "dataset_files"

    dataset: Mapped[str] = mapped_column(
        String(255), ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True
    )
    file: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)


def _string_list(body: dict, key: str) -> list[str]:
    value = body.get(key, [])
    if (
        not isinstance(value, list)
        or len(value) > MAX_ITEMS
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise DatasetError(f"{key} must be a list of at most {MAX_ITEMS} non-empty strings.")
    return list(dict.fromkeys(value))


def _is_file_name(value: object) -> bool:
    try:
        validate_name(value)
    except InvalidName:
        return False
    return True


def validate_dataset(body: dict) -> dict:
    """The dataset a POST body describes. :raises DatasetError: naming the bad field."""
    name = body.get("name")
    if not _is_file_name(name):
        raise DatasetError(
            "name must be 1-255 characters of A-Z a-z 0-9 . _ - starting with a letter or digit."
        )
    if name in RESERVED_NAMES:
        raise DatasetError(f"{name!r} is reserved.")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise DatasetError("description must be a string.")
    uses = _string_list(body, "uses")
    if any(len(use) > 255 for use in uses):
        raise DatasetError("each use must be at most 255 characters.")
    files = _string_list(body, "files")
    if not all(_is_file_name(file) for file in files):
        raise DatasetError("files must be names of stored files.")
    return {"name": name, "description": description, "uses": uses, "files": files}


def create_dataset(database: TenantDatabase, storage: Storage, body: dict) -> dict:
    """Add a dataset (under the storage lock, so its files cannot be deleted meanwhile).

    :raises DatasetError: :raises UnknownFiles: :raises DatasetExists:
    """
    dataset = validate_dataset(body)
    try:
        with storage.lock(), database.transaction() as session:
            known = set(
                session.scalars(
                    select(FileRecord.name).where(FileRecord.name.in_(dataset["files"]))
                )
            )
            unknown = [file for file in dataset["files"] if file not in known]
            if unknown:
                raise UnknownFiles(f"No such file: {', '.join(unknown)}")
            session.add(Dataset(name=dataset["name"], description=dataset["description"]))
            session.flush()
            session.add_all(DatasetUse(dataset=dataset["name"], use=use) for use in dataset["uses"])
            session.add_all(
                DatasetFile(dataset=dataset["name"], file=file, position=position)
                for position, file in enumerate(dataset["files"])
            )
            audit(session, "dataset.create", dataset["name"])
    except IntegrityError:
        raise DatasetExists(f"Dataset {dataset['name']} already exists.") from None
    return get_dataset(database, dataset["name"])


def _describe(database: TenantDatabase, session, names: Sequence[str]) -> list[dict]:
    """Full descriptions of the named datasets, in the order given (one query per part)."""
    if not names:
        return []
    descriptions = dict(
        session.execute(
            select(Dataset.name, Dataset.description).where(Dataset.name.in_(names))
        ).all()
    )
    uses: dict[str, list[str]] = {name: [] for name in names}
    for dataset, use in session.execute(
        select(DatasetUse.dataset, DatasetUse.use)
        .where(DatasetUse.dataset.in_(names))
        .order_by(database.by_bytes(DatasetUse.use))
    ):
        uses[dataset].append(use)
    files: dict[str, list[str]] = {name: [] for name in names}
    sizes = dict.fromkeys(names, 0)
    for dataset, file, size in session.execute(
        select(DatasetFile.dataset, DatasetFile.file, FileRecord.size)
        .join(FileRecord, FileRecord.name == DatasetFile.file, isouter=True)
        .where(DatasetFile.dataset.in_(names))
        .order_by(DatasetFile.position)
    ):
        files[dataset].append(file)
        sizes[dataset] += size or 0
    return [
        {
            "name": name,
            "description": descriptions[name],
            "uses": uses[name],
            "files": files[name],
            "size": sizes[name],
        }
        for name in names
        if name in descriptions
    ]


def get_dataset(database: TenantDatabase, name: str) -> dict:
    """:raises UnknownDataset:"""
    with database.transaction() as session:
        found = _describe(database, session, [name])
    if not found:
        raise UnknownDataset(name)
    return found[0]


def search_datasets(
    database: TenantDatabase, uses: list[str], text: str | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    """Datasets having every one of ``uses`` whose name or description contains ``text``
    (case-insensitive), ordered by name; returns a page and the total before paging."""
    query = select(Dataset.name)
    if uses:
        having_all = (
            select(DatasetUse.dataset)
            .where(DatasetUse.use.in_(set(uses)))
            .group_by(DatasetUse.dataset)
            .having(func.count(DatasetUse.use.distinct()) == len(set(uses)))
        )
        query = query.where(Dataset.name.in_(having_all))
    if text:
        needle = text.lower()
        query = query.where(
            func.lower(Dataset.name).contains(needle, autoescape=True)
            | func.lower(Dataset.description).contains(needle, autoescape=True)
        )
    with database.transaction() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        names = list(
            session.scalars(
                query.order_by(database.by_bytes(Dataset.name)).limit(limit).offset(offset)
            )
        )
        return _describe(database, session, names), total


def delete_dataset(database: TenantDatabase, name: str) -> None:
    """:raises UnknownDataset:"""
    with database.transaction() as session:
        session.execute(delete(DatasetUse).where(DatasetUse.dataset == name))
        session.execute(delete(DatasetFile).where(DatasetFile.dataset == name))
        if not session.execute(delete(Dataset).where(Dataset.name == name)).rowcount:
            raise UnknownDataset(name)
        audit(session, "dataset.delete", name)


def stats(database: TenantDatabase, tables: set[str]) -> dict:
    """The module's figure for ``tenants stats``: ``datasets``, where its table exists."""
    if Dataset.__tablename__ not in tables:
        return {}
    with database.transaction() as session:
        return {"datasets": session.scalar(select(func.count()).select_from(Dataset))}


def file_references(tenant: Tenant, file_name: str) -> list[str]:
    """The datasets that list the stored file (the files module asks before a delete)."""
    return [f"dataset {name}" for name in datasets_listing(tenant.database, file_name)]


def datasets_listing(database: TenantDatabase, file_name: str) -> list[str]:
    """Names of the datasets that list ``file_name``."""
    with database.transaction() as session:
        return list(
            session.scalars(
                select(DatasetFile.dataset)
                .where(DatasetFile.file == file_name)
                .order_by(database.by_bytes(DatasetFile.dataset))
            )
        )


# What a zip may add to its files' bytes: headers per entry, and deflate's worst case on
# bytes that do not compress (5 bytes per 16 KiB block).
ZIP_ENTRY_OVERHEAD = 512
ZIP_GROWTH = 1.001
ZIP_COPY_CHUNK = 1024 * 1024


def link_zip(
    database: TenantDatabase, storage: Storage, names: list[str], quota: int, ttl: int
) -> OneTimeLink:
    """A one-time link to a zip of the named datasets' files. Its size is reserved on the
    quota (from the files' sizes) while it is built, and checked again once it is.

    :raises UnknownDataset: naming the first unknown dataset. :raises OverQuota:
    """
    described = _described(database, names)
    zipped = [described[name] for name in dict.fromkeys(names)]
    entries = sum(len(dataset["files"]) for dataset in zipped)
    estimate = int(sum(dataset["size"] for dataset in zipped) * ZIP_GROWTH)
    estimate += ZIP_ENTRY_OVERHEAD * (entries + 1)
    reservation = reserve(database, storage, estimate, quota)
    try:
        temp, filename = build_zip(database, storage, names, described)
        with storage.lock():
            if temp.stat().st_size > room_left(database, quota, excluding=reservation):
                temp.unlink(missing_ok=True)
                raise OverQuota("The zip would exceed this tenant's storage quota.")
            return link_built_file(
                database,
                storage,
                temp,
                filename,
                download=True,
                ttl=ttl,
                action="dataset.download",
                target=", ".join(dict.fromkeys(names)),
            )
    finally:
        release(database, reservation)


def _described(database: TenantDatabase, names: list[str]) -> dict[str, dict]:
    """The named datasets, by name, as :func:`_describe` has them.

    :raises UnknownDataset: naming the first unknown dataset.
    """
    with database.transaction() as session:
        described = {dataset["name"]: dataset for dataset in _describe(database, session, names)}
    for name in names:
        if name not in described:
            raise UnknownDataset(name)
    return described


def _add_to_zip(archive: zipfile.ZipFile, storage: Storage, record: FileRecord, arcname: str):
    """Stream the record's bytes into the zip as ``arcname`` (deflated, level 1: zips are
    built while a client waits). :raises FileNotFoundError: (see ``stored_bytes``)"""
    with open_stored(storage, record) as source:
        entry = zipfile.ZipInfo(arcname, record.modified_utc.timetuple()[:6])
        entry.compress_type = zipfile.ZIP_DEFLATED
        entry._compresslevel = 1  # what ZipFile.write sets from ZipFile(compresslevel=)
        entry.external_attr = 0o600 << 16
        entry.file_size = record.size  # for the zip64 decision: files over 2 GiB
        with archive.open(entry, "w") as target:
            shutil.copyfileobj(source, target, ZIP_COPY_CHUNK)


def build_zip(
    database: TenantDatabase,
    storage: Storage,
    names: list[str],
    described: dict[str, dict] | None = None,
) -> tuple[Path, str]:
    """Write a zip of ``<dataset>/<file>`` for every file of the named datasets into a temp
    file of the tenant's storage, streaming from disk (zip64 when large).

    :returns: the temp path and a download file name.
    :raises UnknownDataset: naming the first unknown dataset.
    """
    described = described or _described(database, names)
    temp = storage.temp_path()
    try:
        with zipfile.ZipFile(temp, "w", allowZip64=True) as archive:
            for name in dict.fromkeys(names):
                for file in described[name]["files"]:
                    # Each file as its record is now: the blob of that sha256, read whole
                    # even if the file is replaced meanwhile.
                    stored_bytes(
                        database,
                        file,
                        lambda record, arcname=f"{name}/{file}": _add_to_zip(
                            archive, storage, record, arcname
                        ),
                    )
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    filename = (names[0] if len(names) == 1 else "datasets") + ".zip"
    return temp, filename
