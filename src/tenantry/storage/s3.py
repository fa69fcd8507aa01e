"""S3-compatible object storage: the bytes of tenants' files on a store several hosts share.

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
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from tenantry.storage.errors import NoSuchObject, ObjectStoreError, TooLarge
from tenantry.storage.location import StorageLocation

log = logging.getLogger(__name__)

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
        # lazy: botocore loads only where a store is configured
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
    # lazy: boto3 (about 0.3 s) loads only where a store is configured
    import boto3

    return boto3.session.Session()


class ObjectStore:
    """One bucket of an S3-compatible store, through one thread-safe boto3 client."""

    def __init__(self, bucket: str, endpoint_url: str | None = None, client=None):
        self.bucket = bucket
        if client is None:
            # lazy: botocore loads only where a store is configured
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
        # lazy: botocore loads only where a store is configured
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
        # lazy: botocore loads only where a store is configured
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
        # lazy: botocore loads only where a store is configured
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**arguments)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(doing, key, exc) from None

    def _error(self, doing: str, key: str, exc: Exception) -> ObjectStoreError:
        """The store's error (botocore's) as ours: the operation, key and bucket, and the
        store's error code, never a credential."""
        # lazy: botocore loads only where a store is configured
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
