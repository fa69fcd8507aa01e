"""S3-compatible object storage: the bytes of tenants' files on a store several hosts share
(CONTRACT §14).

``TENANTRY_STORAGE_URL=s3://BUCKET/PREFIX`` names the bucket and the key prefix under which
each tenant's objects live (``PREFIX/<slug>/...``); ``TENANTRY_S3_ENDPOINT_URL`` points at
any S3-compatible store (MinIO, Ceph, moto, ...), else AWS's; credentials and region come
from the usual AWS variables and files.

The client is boto3: plain Python over sockets, so that under ``tenantry serve``'s gevent
workers a slow store keeps one greenlet waiting in the hub, never the worker (a client
with its own native runtime, such as obstore, would hold the worker's one thread). It is
imported only when object storage is configured.

What an :class:`ObjectStore` promises, and the routes build on:
- :meth:`put_stream` streams a body of any size in parts of :data:`PART_SIZE` (memory stays
  flat), computes its sha256 on the way, and the object appears under its key whole or not
  at all (a multipart upload becomes visible only when completed; a failed one is aborted);
- :meth:`read` streams a byte range; :meth:`copy` copies on the store's side (a one-time
  link's snapshot), in parts for objects over 5 GiB;
- every error of the store is an :class:`ObjectStoreError` that names the operation and the
  key, never a credential.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tenantry.storage import (
    LINK_UID,
    SHA256,
    STALE_UPLOAD_SECONDS,
    OverQuota,
    TenantStorage,
    TooLarge,  # the one the routes answer 413 for
    validate_sha256,
    validate_uid,
)

STORAGE_URL_ENV_VAR = "TENANTRY_STORAGE_URL"
S3_ENDPOINT_ENV_VAR = "TENANTRY_S3_ENDPOINT_URL"
# S3's smallest part but the last is 5 MiB; 8 MiB parts keep a 1 GiB upload at 128 parts
# (of S3's 10 000) and its memory at one part.
PART_SIZE = 8 * 1024 * 1024
# CopyObject copies at most 5 GiB in one request; larger objects are copied in parts.
COPY_LIMIT = 5 * 1024**3
COPY_PART_SIZE = 512 * 1024**2
READ_CHUNK = 1024 * 1024
# New GETs a read cut off mid-object makes before it gives up.
READ_RETRIES = 2
PROBE_SECONDS = 1.0
POOL_CONNECTIONS = 64
# A bucket name as S3 allows it (3-63 of lower-case letters, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._-]+")

log = logging.getLogger(__name__)


class ObjectStoreError(Exception):
    """The store refused or failed an operation; the message names it and the key."""


class NoSuchObject(ObjectStoreError):
    """No object under that key (a file replaced or deleted meanwhile, say)."""


@dataclass(frozen=True)
class StorageLocation:
    """Where tenants' objects live: a bucket and a key prefix (no leading or trailing /)."""

    bucket: str
    prefix: str

    def tenant_prefix(self, slug: str) -> str:
        return f"{self.prefix}/{slug}/" if self.prefix else f"{slug}/"


def parse_storage_url(url: str | None) -> StorageLocation | None:
    """``s3://BUCKET/PREFIX`` as a :class:`StorageLocation`; None when unset (local disk).

    :raises ValueError: naming the variable and what is wrong, never echoing a secret.
    """
    if url is None or not url.strip():
        return None
    scheme, separator, rest = url.strip().partition("://")
    if scheme != "s3" or not separator:
        raise ValueError(f"{STORAGE_URL_ENV_VAR} must be s3://BUCKET/PREFIX (or unset)")
    bucket, _, prefix = rest.partition("/")
    # The value is not repeated: a mistyped URL may hold a credential.
    if _BUCKET.fullmatch(bucket) is None or ".." in bucket:
        raise ValueError(
            f"{STORAGE_URL_ENV_VAR}: the bucket must be 3-63 lower-case letters, digits, "
            "'.' and '-'"
        )
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(_PREFIX_PART.fullmatch(part) is None or part in (".", "..") for part in parts):
        raise ValueError(
            f"{STORAGE_URL_ENV_VAR}: the prefix must be folders named with letters, digits, "
            "'.', '_' and '-' (not . or ..)"
        )
    return StorageLocation(bucket, prefix)


def storage_location_from_environ() -> StorageLocation | None:
    """TENANTRY_STORAGE_URL, parsed. :raises ValueError:"""
    return parse_storage_url(os.environ.get(STORAGE_URL_ENV_VAR))


@dataclass(frozen=True)
class Stored:
    """What :meth:`ObjectStore.put_stream` stored: its size and sha256; ``body``, the bytes
    themselves, when they were kept rather than stored (``keep_small``)."""

    size: int
    sha256: str
    body: bytes | None = field(default=None, repr=False)  # never in a log line


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: float  # seconds since the epoch


class ObjectReader:
    """An object's bytes as they arrive, in chunks of at most :data:`READ_CHUNK`; ``close``
    lets go of the connection whether or not the bytes were all read (a WSGI server closes
    a body it stops sending)."""

    def __init__(self, key: str, body):
        self.key = key
        self._body = body

    def __iter__(self) -> ObjectReader:
        return self

    def __next__(self) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            chunk = self._body.read(READ_CHUNK)
        except (BotoCoreError, OSError) as exc:
            self.close()
            raise ObjectStoreError(
                f"reading {self.key} from the object store failed: {exc}"
            ) from None
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        self._body.close()


class ObjectFile(io.RawIOBase):
    """A stored object as a read-only, seekable binary file, for werkzeug's Range, ETag and
    304 handling of downloads (``wrap_file`` and ``make_conditional``): reading continues
    one GET from the position to the end of the object; a seek elsewhere starts another.
    Nothing is held but the chunk being read; ``close`` lets go of the connection.

    :raises NoSuchObject: at the first read, if the object is gone by then.
    """

    def __init__(self, store: ObjectStore, key: str, size: int):
        super().__init__()
        self._store = store
        self.key = key
        self.size = size
        self._position = 0
        self._reader: ObjectReader | None = None
        self._pending = memoryview(b"")
        self._on_close: list[Callable[[], None]] = []

    def call_on_close(self, function: Callable[[], None]) -> None:
        """Call ``function`` once the file is closed (a link's snapshot goes then)."""
        self._on_close.append(function)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError("negative seek position")
        if position != self._position:
            self._drop_reader()
            self._position = position
        return position

    def readinto(self, buffer) -> int:
        if self._position >= self.size:
            return 0
        if not self._pending:
            chunk = self._next_chunk()
            if not chunk:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count

    def _next_chunk(self, retries: int = READ_RETRIES) -> bytes:
        """The next chunk from the position; a read cut off mid-object (a reset connection,
        a timeout) goes on with a new GET from where it stopped, a few times."""
        for attempt in range(retries + 1):
            try:
                if self._reader is None:
                    self._reader = self._store.read(self.key, self._position)
                return next(self._reader, b"")
            except NoSuchObject:
                raise
            except ObjectStoreError:
                self._drop_reader()
                if attempt == retries:
                    raise
                log.warning("reading %s was cut off at byte %d; reading on", self.key,
                            self._position)  # fmt: skip
        raise AssertionError("unreachable")

    def peek_exists(self) -> None:
        """Start reading now, so that a missing object raises here rather than at the first
        read (after a response has been promised). :raises NoSuchObject:"""
        if self._reader is None and self._position < self.size:
            self._reader = self._store.read(self.key, self._position)
        elif self.size == 0:
            self._store.head(self.key)

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._pending = memoryview(b"")

    def close(self) -> None:
        self._drop_reader()
        super().close()
        callbacks, self._on_close = self._on_close, []
        for function in callbacks:
            try:
                function()
            except Exception:
                log.warning("a clean-up after reading %s failed", self.key, exc_info=True)


_session_lock = threading.Lock()


@functools.cache
def _boto3_session():
    """One boto3 session per process: each new one loads S3's service model again
    (a few hundred milliseconds), and clients made from one share it."""
    import boto3

    return boto3.session.Session()


class ObjectStore:
    """One bucket of an S3-compatible store, through one thread-safe boto3 client."""

    def __init__(self, bucket: str, endpoint_url: str | None = None, client=None):
        self.bucket = bucket
        if client is None:
            from botocore.config import Config

            with _session_lock:  # a session's client creation is not thread-safe
                client = _boto3_session().client(
                    "s3",
                    endpoint_url=endpoint_url or os.environ.get(S3_ENDPOINT_ENV_VAR) or None,
                    config=Config(
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=10,
                        read_timeout=60,
                        # a gevent worker serves many requests at once: keep their
                        # connections (10 by default; more are made and thrown away)
                        max_pool_connections=POOL_CONNECTIONS,
                        # path-style works on every S3-compatible store; AWS still takes it
                        s3={"addressing_style": "path"},
                    ),
                )
        self.client = client
        self._probed: tuple[float, bool] | None = None

    def answers(self) -> bool:
        """Whether the bucket answers a HEAD; the answer is kept :data:`PROBE_SECONDS` (a
        busy health check must not become the store's load)."""
        now = time.monotonic()
        if self._probed is None or self._probed[0] <= now:
            try:
                self.client.head_bucket(Bucket=self.bucket)
                answered = True
            except Exception:
                log.warning("the object store's bucket %s does not answer", self.bucket)
                answered = False
            self._probed = (now + PROBE_SECONDS, answered)
        return self._probed[1]

    # --- writing -------------------------------------------------------------------------

    def put_stream(
        self, key: str, chunks: Iterable[bytes], max_size: int, keep_small: bool = False
    ) -> Stored:
        """Store the body ``chunks`` under ``key``, whole or not at all; with
        ``keep_small``, a body of less than one part is handed back instead of stored
        (its caller knows its sha256 before storing it once, where it belongs).

        :raises TooLarge: the body passed ``max_size`` (nothing is stored).
        :raises ObjectStoreError:
        """
        digest = hashlib.sha256()
        size = 0
        # The one buffer of the whole upload: it grows to a part (a small body never takes
        # a whole part's memory), then is refilled in place.
        part = bytearray()
        filled = 0
        upload_id = None
        parts: list[dict] = []
        try:
            for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise TooLarge(f"The file is over the limit of {max_size} bytes.")
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    taken = min(len(view), PART_SIZE - filled)
                    if filled == len(part):
                        part += view[:taken]
                    else:
                        part[filled : filled + taken] = view[:taken]
                    filled += taken
                    view = view[taken:]
                    if filled < PART_SIZE:
                        continue
                    if upload_id is None:
                        upload_id = self._call(
                            "start an upload to", key, self.client.create_multipart_upload,
                            Bucket=self.bucket, Key=key,
                        )["UploadId"]  # fmt: skip
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, part))
                    filled = 0
            rest = bytes(memoryview(part)[:filled])
            del part
            if upload_id is None and keep_small:
                return Stored(size, digest.hexdigest(), rest)
            if upload_id is None:  # small enough for one request
                self._call(
                    "store", key, self.client.put_object, Bucket=self.bucket, Key=key, Body=rest
                )  # fmt: skip
            else:
                if rest:
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, rest))
                self._call(
                    "complete the upload to", key, self.client.complete_multipart_upload,
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )  # fmt: skip
                upload_id = None
        except BaseException:
            if upload_id is not None:
                self._abort(key, upload_id)
            raise
        return Stored(size, digest.hexdigest())

    def _upload_part(self, key: str, upload_id: str, number: int, body) -> dict:
        answer = self._call(
            "upload a part to", key, self.client.upload_part,
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
        )  # fmt: skip
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        # Best effort: what an abort leaves is the store's lifecycle rules' to sweep.
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def copy(self, source: str, target: str, size: int | None = None) -> None:
        """Copy ``source`` to ``target`` on the store's side (``size``, if known, saves a
        HEAD).

        :raises NoSuchObject: :raises ObjectStoreError:
        """
        if size is None:
            size = self.head(source).size
        if size <= COPY_LIMIT:
            self._call(
                "copy", source, self.client.copy_object,
                Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source},
            )  # fmt: skip
            return
        upload_id = self._call(
            "start a copy to", target, self.client.create_multipart_upload,
            Bucket=self.bucket, Key=target,
        )["UploadId"]  # fmt: skip
        try:
            parts = []
            for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
                end = min(start + COPY_PART_SIZE, size) - 1
                answer = self._call(
                    "copy a part of", source, self.client.upload_part_copy,
                    Bucket=self.bucket, Key=target, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    CopySourceRange=f"bytes={start}-{end}",
                )  # fmt: skip
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            self._call(
                "complete the copy to", target, self.client.complete_multipart_upload,
                Bucket=self.bucket, Key=target, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except BaseException:
            self._abort(target, upload_id)
            raise

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing to remove is not an error. :raises ObjectStoreError:"""
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=key)

    # --- reading -------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        """:raises NoSuchObject: :raises ObjectStoreError: (the bucket itself is missing)"""
        try:
            answer = self._call(
                "look up", key, self.client.head_object, Bucket=self.bucket, Key=key
            )
        except NoSuchObject:
            # A HEAD's 404 carries no error code: a missing bucket must not pass for a
            # missing object (a mistyped bucket would look empty).
            try:
                self._call("find the bucket of", key, self.client.head_bucket, Bucket=self.bucket)
            except NoSuchObject:
                raise ObjectStoreError(f"the bucket {self.bucket} does not exist") from None
            raise
        return ObjectInfo(
            key, answer["ContentLength"], answer["ETag"], answer["LastModified"].timestamp()
        )

    def open(self, key: str, size: int | None = None) -> ObjectFile:
        """The object as a seekable file (``size`` known from a record saves a HEAD).

        :raises NoSuchObject: :raises ObjectStoreError:
        """
        return ObjectFile(self, key, self.head(key).size if size is None else size)

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object (one HEAD: a missing bucket reads as no object
        here, and fails the write that follows). :raises ObjectStoreError:"""
        try:
            self._call("look up", key, self.client.head_object, Bucket=self.bucket, Key=key)
        except NoSuchObject:
            return False
        return True

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes from ``start`` (``length`` of them, or to the end), streamed
        in chunks of at most :data:`READ_CHUNK`; the request is made before the first chunk
        is asked for, so a missing object raises here, before any byte is promised.

        :raises NoSuchObject: :raises ObjectStoreError:
        """
        if length == 0:
            return iter(())
        arguments = {"Bucket": self.bucket, "Key": key}
        if start or length is not None:  # "bytes=0-" of an empty object is not satisfiable
            end = "" if length is None else start + length - 1
            arguments["Range"] = f"bytes={start}-{end}"
        answer = self._call("read", key, self.client.get_object, **arguments)
        return ObjectReader(key, answer["Body"])

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``. :raises ObjectStoreError:"""
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        item["Key"], item["Size"], item["ETag"], item["LastModified"].timestamp()
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", prefix, exc) from None

    def abort_uploads(self, prefix: str, stale: Callable[[str], bool]) -> int:
        """Abort the multipart uploads under ``prefix`` whose key is ``stale`` (a worker
        killed mid-upload leaves one: its parts are stored, and billed, but under no key);
        returns how many. The caller dates an upload by its key: stores do not all report
        when one began (moto answers the same day in 2010 for every upload).

        :raises ObjectStoreError:
        """
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_multipart_uploads")
        found = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found += [(upload["Key"], upload["UploadId"]) for upload in page.get("Uploads", ())]
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list the uploads under", prefix, exc) from None
        stale = [(key, upload_id) for key, upload_id in found if stale(key)]
        for key, upload_id in stale:
            self._call(
                "abort an upload to", key, self.client.abort_multipart_upload,
                Bucket=self.bucket, Key=key, UploadId=upload_id,
            )  # fmt: skip
        return len(stale)

    # --- errors --------------------------------------------------------------------------

    def _call(self, doing: str, key: str, method, **arguments):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**arguments)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(doing, key, exc) from None

    def _error(self, doing: str, key: str, exc: Exception) -> ObjectStoreError:
        """The store's error (botocore's) as ours: the operation, key and bucket, and the
        store's error code, never a credential."""
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):  # a HEAD's 404 has no code of its own
                return NoSuchObject(f"{key}: no such object in bucket {self.bucket}")
            if code == "NoSuchBucket":
                return ObjectStoreError(f"the bucket {self.bucket} does not exist")
            return ObjectStoreError(
                f"the object store refused to {doing} {key} in bucket {self.bucket}: {code}"
            )
        return ObjectStoreError(f"could not {doing} {key} in bucket {self.bucket}: {exc}")


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
    :class:`tenantry.storage.TenantStorage`'s byte operations, with the same layout and the
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


_stores: dict[tuple[int, str | None], ObjectStore] = {}


def object_store(location: StorageLocation) -> ObjectStore:
    """The process's client of the configured store: one per process and endpoint (a
    client's connections must not cross a fork; a client holds ~15 MiB), shared by the
    buckets it is asked for."""
    endpoint = os.environ.get(S3_ENDPOINT_ENV_VAR) or None
    key = (os.getpid(), endpoint)
    store = _stores.get(key)
    if store is None:
        for old in [k for k in _stores if k[0] != key[0]]:
            del _stores[old]  # a parent's, before the fork
        store = _stores[key] = ObjectStore(location.bucket, endpoint)
    if store.bucket != location.bucket:
        return ObjectStore(location.bucket, client=store.client)
    return store


# Under the prefix (no slug starts with "."): the id of the home whose tenants live there.
CLAIM = ".tenantry-home"


def claim_prefix(location: StorageLocation, home_id: str | None, create: bool = False) -> None:
    """Check that the prefix is the home ``home_id``'s; with ``create``, claim it for the
    home if no home has. ``home_id`` None (a home with no tenant yet): no home may claim it.

    :raises ValueError: another home claims it, or none does (and not ``create``): a
        host pointed at another store of the same bucket name, say.
    :raises ObjectStoreError:
    """
    store = object_store(location)
    key = f"{location.prefix}/{CLAIM}" if location.prefix else CLAIM
    where = f"s3://{location.bucket}/{location.prefix}".rstrip("/")
    try:
        claimed = b"".join(store.read(key)).decode(errors="replace").strip()
    except NoSuchObject:
        if home_id is None:
            return
        if not create:
            raise ValueError(
                f"{where} holds no claim of this home: is this the store the home's tenants "
                f"use ({S3_ENDPOINT_ENV_VAR})?"
            ) from None
        store.put_stream(key, [home_id.encode()], max_size=len(home_id))
        claimed = home_id
    if claimed != home_id:
        raise ValueError(
            f"{where} is another tenantry home's (its {CLAIM} names another): give each home "
            "a prefix of its own"
        )


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
