"""One tenant's files on an object store: the same operations as
:class:`tenantry.storage.local.TenantStorage`, with the bytes under ``PREFIX/<slug>/`` of
the shared bucket; and :func:`tenant_storage`, which picks the backend a home uses."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tenantry.storage.errors import NoSuchObject, OverQuota
from tenantry.storage.local import (
    LINK_UID,
    SHA256,
    STALE_UPLOAD_SECONDS,
    TenantStorage,
    validate_sha256,
    validate_uid,
)
from tenantry.storage.location import StorageLocation, storage_location_from_environ
from tenantry.storage.s3 import READ_CHUNK, ObjectFile, ObjectStore, object_store


@dataclass(frozen=True)
class ReceivedObject:
    """An upload waiting for :meth:`TenantObjects.commit`: streamed into the store under
    ``incoming/`` (``key``), or, under one part's size, kept in memory (``body``)."""

    key: str | None
    size: int
    sha256: str
    body: bytes | None = field(default=None, repr=False)  # never in a log line


class TenantObjects:
    """One tenant's bytes in the object store, under ``PREFIX/<slug>/``: the counterpart of
    :class:`tenantry.storage.local.TenantStorage`'s byte operations, with the same layout and the
    same guarantees.

    - ``incoming/<random>``: uploads in progress (whole or absent, see
      :meth:`ObjectStore.put_stream`); swept when older than a killed upload can be.
    - ``blobs/<sha256>``: stored bytes, addressed by their content, never changed in place;
      a file's name → sha256 lives in the tenant database.
    - ``links/<uid>``: a one-time link's snapshot, a copy made on the store's side (or a zip
      built for a dataset download).

    Decisions about what is stored (the quota, which blobs are still named) are taken under
    :meth:`lock`, a file lock in the tenant's folder of the shared home.
    """

    def __init__(self, store: ObjectStore, location: StorageLocation, slug: str, folder: Path):
        self.store = store
        self.prefix = location.tenant_prefix(slug)
        self.folder = Path(folder)
        # The tenant's storage folder on the shared home: its lock, and zips being built.
        self.local = TenantStorage(self.folder)

    def _key(self, area: str, name: str) -> str:
        return f"{self.prefix}{area}/{name}"

    def ensure(self, parents: bool = False) -> None:
        """The tenant's storage folder on the shared home (its lock, zips being built)."""
        self.local.ensure(parents=parents)

    def lock(self):
        """The tenant folder's storage lock (:meth:`TenantStorage.lock`)."""
        return self.local.lock()

    def check(self) -> bool:
        """Whether the bucket answers and the tenant's folder (its lock) is writable, for
        /status; the bucket's answer is kept for a second per process."""
        return self.local.check() and self.store.answers()

    # --- stored files --------------------------------------------------------------------

    def receive(self, chunks: Iterable[bytes], max_size: int, room: int) -> ReceivedObject:
        """Stream ``chunks`` into ``incoming/``; ``room`` is the quota's first bound.

        :raises TooLarge: :raises OverQuota: (nothing is kept) :raises ObjectStoreError:
        """

        def within_quota():
            size = 0
            for chunk in chunks:
                size += len(chunk)
                if size > room:
                    raise OverQuota("The upload would exceed this tenant's storage quota.")
                yield chunk

        # Dated by its name: the sweep knows a dead upload's age whatever the store says.
        key = self._key("incoming", f"{int(time.time())}-{secrets.token_hex(16)}")
        stored = self.store.put_stream(key, within_quota(), max_size=max_size, keep_small=True)
        if stored.body is not None:
            return ReceivedObject(None, stored.size, stored.sha256, stored.body)
        return ReceivedObject(key, stored.size, stored.sha256)

    def commit(self, received: ReceivedObject) -> bool:
        """Add received bytes as the blob of their sha256 (under :meth:`lock`); whether the
        blob is new. A small body is stored there at once; a large one was streamed into
        ``incoming/``, and the store has no rename: a copy on its side (the caller's
        :meth:`discard` deletes what it leaves)."""
        blob = self.blob_key(received.sha256)
        created = not self.store.exists(blob)
        if created and received.body is not None:
            self.store.put_stream(blob, (received.body,), max_size=received.size)
        elif created:
            self.store.copy(received.key, blob, size=received.size)
        return created

    def discard(self, received: ReceivedObject) -> None:
        if received.key is not None:
            self.store.delete(received.key)

    def blob_key(self, sha256: str) -> str:
        """:raises InvalidName: not a sha256."""
        return self._key("blobs", validate_sha256(sha256))

    def open_blob(self, sha256: str, size: int, name: str | None = None) -> ObjectFile:
        """The bytes of a stored file, as its record describes them (``name`` is for the
        local disk's files stored before blobs; the store never had such).

        :raises FileNotFoundError: the blob is gone (the file was replaced or deleted since
            its record was read: read it again).
        """
        return _opened(ObjectFile(self.store, self.blob_key(sha256), size), sha256)

    def drop_blob(self, sha256: str) -> None:
        self.store.delete(self.blob_key(sha256))

    def drop_legacy(self, name: str) -> None:
        """Nothing: the store never held files under their names."""

    # --- one-time links and zips -----------------------------------------------------------

    def snapshot_key(self, uid: str) -> str:
        return self._key("links", validate_uid(uid))

    def snapshot(
        self, sha256: str, uid: str, size: int | None = None, name: str | None = None
    ) -> int:
        """Freeze a blob's bytes for a link (a copy on the store's side, which a later
        replace or delete of the file leaves alone); returns their size (``size``, from
        the file's record, saves asking the store).

        :raises FileNotFoundError: the blob is gone.
        """
        target = self.snapshot_key(uid)
        try:
            self.store.copy(self.blob_key(sha256), target)
        except NoSuchObject:
            raise FileNotFoundError(sha256) from None
        return self.store.head(target).size if size is None else size

    def temp_path(self) -> Path:
        """A fresh private file in the tenant's folder, for a zip being built before
        :meth:`publish_snapshot` streams it into the store (never making the folder of a
        tenant deleted meanwhile)."""
        return self.local.temp_path()

    def publish_snapshot(self, temp: Path, uid: str) -> int:
        """Stream a finished temp file into the store as a link's snapshot; returns its
        size. The temp file is gone afterwards, stored or not."""
        try:
            with open(temp, "rb") as source:
                chunks = iter(lambda: source.read(READ_CHUNK), b"")
                stored = self.store.put_stream(self.snapshot_key(uid), chunks, max_size=1 << 62)
        finally:
            temp.unlink(missing_ok=True)
        return stored.size

    def open_snapshot(self, uid: str, size: int | None = None) -> ObjectFile:
        """A link's bytes, their read already started: a GET under way completes even if
        the object is deleted meanwhile (S3 serves a key's old bytes or its new ones, never
        a mix), so a redeemed link drops its snapshot as soon as it is won.

        :raises FileNotFoundError: no such snapshot (used, swept or never made).
        """
        key = self.snapshot_key(uid)
        try:
            handle = self.store.open(key, size)
        except NoSuchObject:
            raise FileNotFoundError(uid) from None
        return _opened(handle, uid)

    def drop_snapshot(self, uid: str, after: ObjectFile | None = None) -> None:
        """Remove a link's snapshot; with ``after`` (the snapshot, opened), once that is
        closed: a read cut off mid-way must be able to go on."""
        key = self.snapshot_key(uid)
        if after is not None:
            after.call_on_close(lambda: self.store.delete(key))
            return
        self.store.delete(key)

    # --- backups: blobs pinned while an archive is written, tenants put in place ----------

    def pin(self, pin_id: str, blobs: Iterable[str]) -> None:
        """Copy each blob (on the store's side) under ``pins/<pin_id>/`` (under
        :meth:`lock`), so that a replace or delete meanwhile cannot take its bytes away.

        :raises FileNotFoundError: naming the sha256 of a blob that is gone.
        """
        for sha256 in blobs:
            try:
                self.store.copy(self.blob_key(sha256), self._pin_key(pin_id, sha256))
            except NoSuchObject:
                raise FileNotFoundError(sha256) from None

    def _pin_key(self, pin_id: str, sha256: str) -> str:
        return self._key("pins", f"{validate_uid(pin_id)}/{validate_sha256(sha256)}")

    def copy_blob_to(
        self, other: TenantObjects, sha256: str, size: int, pin_id: str | None = None
    ) -> None:
        """Copy a blob (or, with ``pin_id``, its pin) to ``other`` tenant's blobs, on the
        store's side, unless it is there (a clone). :raises FileNotFoundError:"""
        target = other.blob_key(sha256)
        if self.store.exists(target):
            return
        source = self._pin_key(pin_id, sha256) if pin_id else self.blob_key(sha256)
        try:
            self.store.copy(source, target, size=size)
        except NoSuchObject:
            raise FileNotFoundError(sha256) from None

    def open_pinned(self, pin_id: str, sha256: str, size: int) -> ObjectFile:
        """:raises FileNotFoundError:"""
        return _opened(ObjectFile(self.store, self._pin_key(pin_id, sha256), size), sha256)

    def drop_pins(self, pin_id: str | None = None) -> int:
        """Remove the pins of one backup (or of every one: those a killed one left);
        returns how many objects went."""
        prefix = self._key("pins", f"{validate_uid(pin_id)}/" if pin_id else "")
        return self._drop_under(prefix)

    def add_blob(self, sha256: str, path: Path) -> bool:
        """Store the file at ``path`` (whose sha256 the caller checked) as that blob unless
        it is there; whether it was added."""
        key = self.blob_key(sha256)
        if self.store.exists(key):
            return False
        with open(path, "rb") as source:
            chunks = iter(lambda: source.read(READ_CHUNK), b"")
            self.store.put_stream(key, chunks, max_size=1 << 62)
        return True

    def drop_everything(self) -> int:
        """Remove every object of the tenant (it is being deleted), and abort its uploads
        in progress; returns how many went."""
        return self._drop_under(self.prefix) + self.store.abort_uploads(self.prefix, bool)

    def _drop_under(self, prefix: str) -> int:
        removed = 0
        for info in list(self.store.list(prefix)):
            self.store.delete(info.key)
            removed += 1
        return removed

    # --- scheduled backups: archives under backups/ ------------------------------------------

    def put_backup(self, path: Path, name: str) -> int:
        """Stream a finished archive into ``backups/<name>`` (whole or absent); returns its
        size."""
        with open(path, "rb") as source:
            chunks = iter(lambda: source.read(READ_CHUNK), b"")
            return self.store.put_stream(self._key("backups", name), chunks, max_size=1 << 62).size

    def backups(self) -> list[tuple[str, int]]:
        """The archives under ``backups/``: (name, size), by name."""
        prefix = self._key("backups", "")
        found = ((info.key[len(prefix) :], info.size) for info in self.store.list(prefix))
        return sorted((name, size) for name, size in found if "/" not in name)

    def open_backup(self, name: str) -> ObjectFile:
        """An archive under ``backups/``, to read. :raises FileNotFoundError:"""
        try:
            return _opened(self.store.open(self._key("backups", name)), name)
        except NoSuchObject:
            raise FileNotFoundError(name) from None

    def drop_backup(self, name: str) -> None:
        self.store.delete(self._key("backups", name))

    # --- clean-up ----------------------------------------------------------------------------

    def sweep_incoming(self, older_than: float = STALE_UPLOAD_SECONDS) -> int:
        """Remove uploads that died (a killed worker: an object under ``incoming/`` or a
        multipart upload never completed) and zips never published; returns how many."""
        cutoff = time.time() - older_than
        incoming = self.prefix + "incoming/"

        def stale(key: str) -> bool:
            started, _, _ = key[len(incoming) :].partition("-")
            return not started.isdigit() or int(started) < cutoff

        removed = 0
        for info in self.store.list(incoming):
            if stale(info.key):
                self.store.delete(info.key)
                removed += 1
        removed += self.store.abort_uploads(incoming, stale)
        return removed + self.local.sweep_incoming(older_than)

    def blob_names(self) -> list[str]:
        return self._names("blobs", SHA256)

    def snapshot_names(self) -> list[str]:
        return self._names("links", LINK_UID)

    def _names(self, area: str, pattern: re.Pattern) -> list[str]:
        """The names under ``area/`` that ``pattern`` takes (a "folder" marker another tool
        made, say, is none of ours)."""
        prefix = self._key(area, "")
        names = (info.key[len(prefix) :] for info in self.store.list(prefix))
        return [name for name in names if pattern.fullmatch(name)]


def _opened(handle: ObjectFile, what: str) -> ObjectFile:
    """``handle`` with its first read started, so that a missing object shows now, before
    a response is promised. :raises FileNotFoundError:"""
    try:
        handle.peek_exists()
    except NoSuchObject:
        handle.close()
        raise FileNotFoundError(what) from None
    except BaseException:
        handle.close()
        raise
    return handle


def tenant_storage(folder: str | os.PathLike[str], slug: str) -> TenantStorage | TenantObjects:
    """The tenant's storage on the configured backend: the object store when
    TENANTRY_STORAGE_URL is set, else the local disk at ``folder`` (its
    ``tenants/<slug>/storage/``, which keeps the lock and zips being built either way).

    :raises ValueError: TENANTRY_STORAGE_URL is malformed.
    """
    location = storage_location_from_environ()
    if location is None:
        return TenantStorage(folder)
    return TenantObjects(object_store(location), location, slug, Path(folder))
