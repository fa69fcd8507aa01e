"""A tenant's storage root on the local disk: the only code that turns file names into paths;
and :class:`Storage`, the operations every backend offers the routes (with :class:`Received`,
what an upload gives back).

Names are checked against the documented pattern before any path is built, and the path is
checked to stay directly inside the root. Uploads stream into a temp file of the root's own
``.incoming/`` folder (a name no valid file name can take) and are renamed into
``.blobs/<sha256>``: stored bytes are addressed by their content and never change in place.
A file's name → sha256 lives in the tenant database, so a file and its record change in
one transaction, and the bytes a download opens are always the ones its ETag names.

Two backends keep the bytes: :class:`TenantStorage` on the local disk (the default) and
:class:`tenantry.storage.objects.TenantObjects` in an S3-compatible store. Both offer
the operations of :class:`Storage`, and the routes use nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from tenantry.storage.errors import InvalidName, OverQuota, TooLarge
from tenantry.support.atomic import PRIVATE_DIR, PRIVATE_FILE
from tenantry.support.locking import file_lock

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
INCOMING = ".incoming"
LINKS = ".links"
BLOBS = ".blobs"
SHA256 = re.compile(r"[0-9a-f]{64}")
LINK_UID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHUNK_SIZE = 1024 * 1024
# Temp files older than this are left-overs of killed uploads.
STALE_UPLOAD_SECONDS = 6 * 3600


class Storage(Protocol):
    """What a tenant's storage offers, on either backend: the interface the files, links and
    datasets modules (and an endpoint module of your own) use. Names and uids are checked
    here; every "open" hands back a binary file the caller closes.

    Bytes are addressed by their sha256 (a file's record names it); a one-time link's bytes
    (a snapshot) by the link's uid. Decisions about what is stored (the quota, which blobs
    are still named) are taken under :meth:`lock`, which holds across worker processes.
    """

    def ensure(self, parents: bool = False) -> None: ...
    def check(self) -> bool: ...
    def lock(self) -> contextlib.AbstractContextManager[None]: ...

    def receive(self, chunks: Iterable[bytes], max_size: int, room: int) -> Received:
        """Stream an upload in (not yet visible); :raises TooLarge: :raises OverQuota:"""

    def commit(self, received: Received) -> bool:
        """Add received bytes as their sha256's blob (under :meth:`lock`); whether new."""

    def discard(self, received: Received) -> None: ...

    def open_blob(self, sha256: str, size: int, name: str | None = None) -> IO[bytes]:
        """A stored file's bytes; :raises FileNotFoundError: the blob is gone."""

    def drop_blob(self, sha256: str) -> None: ...
    def drop_legacy(self, name: str) -> None: ...

    def snapshot(
        self, sha256: str, uid: str, size: int | None = None, name: str | None = None
    ) -> int:
        """Freeze a blob's bytes as a link's; their size. :raises FileNotFoundError:"""

    def temp_path(self) -> Path: ...
    def publish_snapshot(self, temp: Path, uid: str) -> int: ...

    def open_snapshot(self, uid: str, size: int | None = None) -> IO[bytes]:
        """A link's bytes; :raises FileNotFoundError: used, swept or never made."""

    def drop_snapshot(self, uid: str, after: IO[bytes] | None = None) -> None:
        """Remove a link's snapshot; with ``after`` (it, opened by :meth:`open_snapshot`),
        its bytes stay readable through that until it is closed."""

    def sweep_incoming(self, older_than: float = ...) -> int: ...

    def blob_names(self) -> list[str]:
        """The sha256 of every blob held (for a sweep of those no record names)."""

    def snapshot_names(self) -> list[str]:
        """The uid of every link snapshot (and zip) held."""


@dataclass(frozen=True)
class Received:
    """An upload streamed into a temp file, waiting for :meth:`TenantStorage.commit`."""

    path: Path
    size: int
    sha256: str


def link_or_copy(source: Path, target: Path) -> None:
    """Give ``source``'s bytes a second name without copying them (a hard link); on a
    filesystem without hard links, a private copy.

    :raises FileNotFoundError: ``source`` is gone. :raises FileExistsError:
    """
    try:
        os.link(source, target)
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError:
        shutil.copyfile(source, target)
        os.chmod(target, PRIVATE_FILE)


def validate_sha256(sha256: str) -> str:
    """:raises InvalidName: not a lower-case hex sha256 (a blob's name)."""
    if not isinstance(sha256, str) or SHA256.fullmatch(sha256) is None:
        raise InvalidName("not a sha256")
    return sha256


def validate_uid(uid: str) -> str:
    """:raises InvalidName: not a link uid (URL-safe base64, as links make them)."""
    if not isinstance(uid, str) or LINK_UID.fullmatch(uid) is None:
        raise InvalidName("not a link uid")
    return uid


def validate_name(name: str) -> str:
    """:raises InvalidName: unless the whole name matches the file-name pattern."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise InvalidName(
            "File names are 1-255 characters of A-Z a-z 0-9 . _ - starting with a letter or digit."
        )
    return name


@contextlib.contextmanager
def _helper_thread() -> Iterator[Callable[[Callable[[bytes], None], bytes], Callable[[], None]]]:
    """``beside(function, argument)``: starts ``function(argument)`` in an operating-system
    thread and returns the wait for it. Under gevent's monkey-patching a thread pool's
    "threads" are greenlets, which would run the hash after the write rather than beside
    it: there the hub's pool of real threads does the work (and the greenlet waits in the
    hub, so the worker's other requests go on)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        pool = sys.modules["gevent"].get_hub().threadpool
        yield lambda function, argument: pool.spawn(function, argument).get
        return
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenantry-sha256")
    try:
        yield lambda function, argument: executor.submit(function, argument).result
    finally:
        executor.shutdown()


class TenantStorage:
    """Files of one tenant, all directly under ``root``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.incoming = self.root / INCOMING
        self.links = self.root / LINKS
        self.blobs = self.root / BLOBS

    def ensure(self, parents: bool = False) -> None:
        """Create the storage root (and its upload and link areas) if missing, private;
        its parent folders too with ``parents`` (when the tenant's app is built), never
        otherwise: a request still running for a tenant being deleted must not make its
        folder again.

        :raises FileNotFoundError: the root's folder is gone (and not ``parents``).
        """
        self.root.mkdir(mode=PRIVATE_DIR, parents=parents, exist_ok=True)
        for folder in (self.incoming, self.links, self.blobs):
            folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)

    def check(self) -> bool:
        """Whether the root exists and this process may create and remove files there."""
        return self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise changes of what is stored (across worker processes): held only while
        an upload is committed or a file deleted, never while bytes stream in."""
        self.ensure()
        with file_lock(self.root / ".lock"):
            yield

    def path_of(self, name: str) -> Path:
        """The path of a stored file. :raises InvalidName:"""
        path = self.root / validate_name(name)
        if path.parent != self.root or path.name != name:
            raise InvalidName("File names cannot name a path.")
        return path

    def receive(self, chunks: Iterable[bytes], max_size: int, room: int) -> Received:
        """Stream ``chunks`` into a temp file, for :meth:`commit`. ``room`` is a first
        bound from the quota, checked while streaming.

        :raises TooLarge: :raises OverQuota: (the temp file is gone then)
        """
        temp = self.temp_path()
        digest = hashlib.sha256()
        size = 0
        # Hashing and writing both release the GIL: a chunk is hashed in a helper thread
        # while it is written, so an upload costs the slower of the two, not their sum.
        try:
            with _helper_thread() as beside, open(temp, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_size:
                        raise TooLarge(f"The file is over the limit of {max_size} bytes.")
                    if size > room:
                        raise OverQuota("The upload would exceed this tenant's storage quota.")
                    hashed = beside(digest.update, chunk)
                    out.write(chunk)
                    hashed()
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Received(temp, size, digest.hexdigest())

    def blob_path(self, sha256: str) -> Path:
        """Where the bytes of that sha256 live. :raises InvalidName: not a sha256."""
        return self.blobs / validate_sha256(sha256)

    def stored_path(self, name: str, sha256: str) -> Path:
        """The path of stored file ``name``'s bytes, whose sha256 its record holds.

        A file stored before content addressing (at ``<root>/<name>``) gets its blob here,
        on first use, by a hard link: nothing is copied and nothing moves.

        :raises InvalidName: :raises FileNotFoundError: the bytes are gone (the file was
            replaced or deleted since its record was read: read it again).
        """
        blob = self.blob_path(sha256)
        if not blob.exists():
            legacy = self.path_of(name)
            with contextlib.suppress(FileExistsError):
                os.link(legacy, blob)
        return blob

    def open_blob(self, sha256: str, size: int | None = None, name: str | None = None):
        """The bytes of a stored file whose record names ``sha256`` (and, for a file stored
        before content addressing, ``name``), open for reading.

        :raises InvalidName: :raises FileNotFoundError: the bytes are gone (the file was
            replaced or deleted since its record was read: read it again).
        """
        path = self.stored_path(name, sha256) if name is not None else self.blob_path(sha256)
        return open(path, "rb")

    def commit(self, received: Received) -> bool:
        """Move received bytes in as the blob of their sha256 (call under :meth:`lock`);
        whether the blob is new (the same bytes may be stored under another name)."""
        blob = self.blob_path(received.sha256)
        created = not blob.exists()
        os.replace(received.path, blob)
        return created

    def drop_blob(self, sha256: str) -> None:
        """Remove the bytes of a sha256 no stored file refers to (under :meth:`lock`)."""
        self.blob_path(sha256).unlink(missing_ok=True)

    def drop_legacy(self, name: str) -> None:
        """Remove a file's bytes at ``<root>/<name>``, where they were kept before blobs."""
        self.path_of(name).unlink(missing_ok=True)

    def discard(self, received: Received) -> None:
        received.path.unlink(missing_ok=True)

    def snapshot_path(self, uid: str) -> Path:
        """Where a one-time link's bytes live; ``uid`` is URL-safe base64 by construction."""
        return self.links / validate_uid(uid)

    def snapshot(
        self, sha256: str, uid: str, size: int | None = None, name: str | None = None
    ) -> int:
        """Freeze the bytes of a blob (as :meth:`open_blob` finds them) for a link; returns
        their size.

        A hard link shares the bytes without copying; a later upload or delete drops the
        blob's name only, never the snapshot.

        :raises InvalidName: :raises FileNotFoundError: the bytes are gone.
        """
        source = self.stored_path(name, sha256) if name is not None else self.blob_path(sha256)
        target = self.snapshot_path(uid)
        self.ensure()
        link_or_copy(source, target)
        return target.stat().st_size

    def open_snapshot(self, uid: str, size: int | None = None):
        """A link's bytes, open for reading: they stay readable through the handle after
        :meth:`drop_snapshot`. :raises FileNotFoundError: used, swept or never made."""
        return open(self.snapshot_path(uid), "rb")

    def temp_path(self) -> Path:
        """A fresh empty file in the upload area (mode 0600), for bytes written before
        they are published; open it with ``"wb"``."""
        self.ensure()
        path = self.incoming / f"{secrets.token_hex(16)}.part"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        return path

    def publish_snapshot(self, temp: Path, uid: str) -> int:
        """Move a finished temp file in as a link's snapshot; returns its size."""
        target = self.snapshot_path(uid)
        os.replace(temp, target)
        return target.stat().st_size

    def drop_snapshot(self, uid: str, after=None) -> None:
        """Remove a link's snapshot (``after``, the snapshot opened, keeps its bytes
        readable: an open file's bytes outlive its name)."""
        self.snapshot_path(uid).unlink(missing_ok=True)

    def blob_names(self) -> list[str]:
        return _names_in(self.blobs, SHA256)

    def snapshot_names(self) -> list[str]:
        return _names_in(self.links, LINK_UID)

    def sweep_incoming(self, older_than: float = STALE_UPLOAD_SECONDS) -> int:
        """Remove temp files of uploads that died (a killed worker); returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        if not self.incoming.is_dir():
            return 0
        for entry in os.scandir(self.incoming):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


def _names_in(folder: Path, pattern: re.Pattern) -> list[str]:
    """The names in ``folder`` that ``pattern`` takes (none if it is missing)."""
    try:
        with os.scandir(folder) as entries:
            return [entry.name for entry in entries if pattern.fullmatch(entry.name)]
    except FileNotFoundError:
        return []
