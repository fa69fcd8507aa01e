"""The backup archive of one tenant: a gzip-compressed tar whose first member is its manifest.

Members, in this order::

    manifest.json            format, slug, name, created, versions, revisions, members
    tenant/config.py         the config module
    tenant/env               the .env
    database/<table>.jsonl   the rows of each table, backend-neutral
    files/<sha256>           the bytes of each stored file, once per content

The manifest comes first, so that a reader knows every member's size and sha256 before it
reads any: a member the manifest does not name, of another size or type, is refused at its
header, before a byte of it is read or written (a lying manifest or a gzip bomb goes no
further than that), and a restore can tell up front whether the archive fits on the disk.
Member names are never used as paths: they are matched against the patterns above.

The gzip stream is a series of gzip members of 1 MiB of tar each (valid gzip: ``tar xzf``
and Python's ``gzip`` read it), each stored or compressed (level 1) depending on whether a
sample of it compresses. Stored files are often compressed already, and zlib spends as long
failing to compress them as it would compressing text.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from tenantry.support.errors import PlatformError

FORMAT = 1
KIND = "tenantry-backup"
MANIFEST = "manifest.json"
CONFIG_MEMBER = "tenant/config.py"
ENV_MEMBER = "tenant/env"
TABLE_MEMBER = re.compile(r"database/([A-Za-z0-9_][A-Za-z0-9_-]{0,126})\.jsonl")
FILE_MEMBER = re.compile(r"files/([0-9a-f]{64})")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_SMALL_MEMBER = 1024 * 1024  # the config module and .env are read into memory
CHUNK = 1024 * 1024
SAMPLE = 16 * 1024
# A sample that does not shrink below this share of its size is stored, not compressed.
STORE_RATIO = 0.9
BLOCK = tarfile.BLOCKSIZE
# Zeros a tar writer may pad its end with (tar pads to 10 KiB records).
MAX_TRAILING = 64 * 1024
# The most a GNU long-name or pax extended header may hold. tarfile reads such a header's
# claimed size into memory before any check of ours: an archive of 400 KB claiming a
# 400 MiB name would take 1.3 GB. Names here are short; a pax header carries a few.
MAX_EXTENDED_HEADER = 64 * 1024


class ArchiveError(PlatformError):
    """The archive is not a whole, unaltered tenantry backup: the message says where."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


def is_member_name(name: str) -> bool:
    return (
        name in (CONFIG_MEMBER, ENV_MEMBER)
        or TABLE_MEMBER.fullmatch(name) is not None
        or FILE_MEMBER.fullmatch(name) is not None
    )


class _GzipChunks:
    """A write-only stream that gzips what it is given, 1 MiB per gzip member."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.pending = bytearray()

    def write(self, data) -> None:
        self.pending += data
        if len(self.pending) >= CHUNK:
            view = memoryview(self.pending)
            whole = len(view) - len(view) % CHUNK
            for start in range(0, whole, CHUNK):
                self._member(view[start : start + CHUNK])
            view.release()
            del self.pending[:whole]

    def _member(self, chunk) -> None:
        sample = bytes(chunk[:SAMPLE])
        level = 1 if len(zlib.compress(sample, 1)) < STORE_RATIO * len(sample) else 0
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip member
        self.out.write(compressor.compress(chunk))
        self.out.write(compressor.flush())

    def close(self) -> None:
        if self.pending:
            self._member(memoryview(self.pending))
            self.pending.clear()


class ArchiveWriter:
    """Writes the members of one archive, streamed: the manifest first, then each member
    the manifest names, in its order, each checked against its sha256 as it goes out."""

    def __init__(self, out: BinaryIO, manifest: dict):
        self.stream = _GzipChunks(out)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenantry-gzip")
        self.expected = iter(manifest["members"])
        self.mtime = int(time.time())
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        self._header(MANIFEST, len(body))
        self.stream.write(body)
        self._pad(len(body))

    def add(self, name: str, source: BinaryIO) -> None:
        """Stream the next member from ``source``.

        :raises ArchiveError: ``source`` does not hold the bytes the manifest says (a
            stored file changed on disk: the backup must not carry it as good).
        """
        member = next(self.expected)
        if member["name"] != name:
            raise AssertionError(f"member {name} out of the manifest's order")
        self._header(name, member["size"])
        digest = hashlib.sha256()
        size = 0
        # Hashing and gzip both release the GIL: a chunk is hashed here while the one
        # before it is compressed and written in a helper thread.
        written = None
        while chunk := source.read(min(CHUNK, member["size"] - size)):
            digest.update(chunk)
            if written is not None:
                written.result()
            written = self.writer.submit(self.stream.write, chunk)
            size += len(chunk)
        if written is not None:
            written.result()
        if size != member["size"] or digest.hexdigest() != member["sha256"]:
            raise ArchiveError(f"{name} changed while it was written (or its bytes are damaged)")
        self._pad(size)

    def close(self) -> None:
        """Write the end of the archive. :raises AssertionError: members are missing."""
        if next(self.expected, None) is not None:
            raise AssertionError("members of the manifest were not written")
        self.stream.write(bytes(2 * BLOCK))
        self.stream.close()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.writer.shutdown()

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = self.mtime
        self.stream.write(info.tobuf(tarfile.PAX_FORMAT))

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self.stream.write(bytes(BLOCK - size % BLOCK))


def describe(name: str, data: bytes) -> dict:
    """The manifest entry of a member held in memory."""
    return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _check_manifest(manifest: object) -> dict:
    """:raises ArchiveError: the manifest is not one this tenantry can read."""
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise ArchiveError("manifest.json is not a tenantry backup's manifest")
    if manifest.get("format") != FORMAT:
        raise ArchiveError(
            f"the archive is format {manifest.get('format')!r}; this tenantry reads {FORMAT}"
        )
    members = manifest.get("members")
    if not isinstance(members, list):
        raise ArchiveError("manifest.json lists no members")
    seen = set()
    for member in members:
        if (
            not isinstance(member, dict)
            or not isinstance(member.get("name"), str)
            or not is_member_name(member["name"])
            or isinstance(member.get("size"), bool)
            or not isinstance(member.get("size"), int)
            or member["size"] < 0
            or not isinstance(member.get("sha256"), str)
            or re.fullmatch(r"[0-9a-f]{64}", member["sha256"]) is None
        ):
            raise ArchiveError(f"manifest.json has an invalid member entry: {member!r:.200}")
        if member["name"] in seen:
            raise ArchiveError(f"manifest.json names {member['name']} twice")
        seen.add(member["name"])
        file = FILE_MEMBER.fullmatch(member["name"])
        if file is not None and file.group(1) != member["sha256"]:
            raise ArchiveError(f"manifest.json gives {member['name']} another sha256")
    for required in (CONFIG_MEMBER, ENV_MEMBER):
        if required not in seen:
            raise ArchiveError(f"manifest.json does not list {required}")
    return manifest


class _CappedTarInfo(tarfile.TarInfo):
    """A tar header whose long-name and pax extensions are refused past
    :data:`MAX_EXTENDED_HEADER`, before tarfile reads them."""

    def _proc_gnulong(self, tar):  # tarfile's own hook, for GNU long names and links
        self._refuse_large(tar)
        return super()._proc_gnulong(tar)

    def _proc_pax(self, tar):  # tarfile's own hook, for pax extended headers
        self._refuse_large(tar)
        return super()._proc_pax(tar)

    def _refuse_large(self, tar) -> None:
        if self.size > MAX_EXTENDED_HEADER:
            raise tarfile.HeaderError(
                f"an extended header claims {self.size} bytes (at most {MAX_EXTENDED_HEADER})"
            )


class ArchiveReader:
    """Reads an archive member by member, checking each against the manifest.

    ``members()`` yields (entry, stream) for each member in the archive's order; the caller
    reads the stream to its end (or not: what it leaves is read and checked anyway). When
    the iteration ends, every member was there, whole and unaltered; anything else raises
    :class:`ArchiveError` where it is found.
    """

    def __init__(self, source: BinaryIO):
        self.gzip = gzip.GzipFile(fileobj=source, mode="rb")
        self.stream = _Tail(self.gzip)
        try:
            self.tar = tarfile.open(  # noqa: SIM115 (close())
                fileobj=self.stream, mode="r|", bufsize=CHUNK, tarinfo=_CappedTarInfo
            )
            first = self.tar.next()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ArchiveError(f"not a readable .tar.gz: {exc}") from None
        if first is None or first.name != MANIFEST or not first.isreg():
            raise ArchiveError("the archive does not start with manifest.json")
        if first.size > MAX_MANIFEST_BYTES:
            raise ArchiveError("manifest.json is too large")
        body = self._read_all(first)
        try:
            manifest = json.loads(body)
        except (ValueError, RecursionError):
            raise ArchiveError("manifest.json is not valid JSON") from None
        self.manifest = _check_manifest(manifest)
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenantry-sha256")
        self.entries = {member["name"]: Member(**member) for member in manifest["members"]}

    @property
    def total_size(self) -> int:
        return sum(member.size for member in self.entries.values())

    def members(self) -> Iterator[tuple[Member, BinaryIO]]:
        seen: set[str] = set()
        while True:
            try:
                info = self.tar.next()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                damaged = f"the archive is damaged after {len(seen)} members: {exc}"
                raise ArchiveError(damaged) from None
            if info is None:
                self._check_end()
                break
            name = info.name
            member = self.entries.get(name)
            if member is None or name in seen:
                raise ArchiveError(f"member {name!r:.200} is not in the manifest")
            if not info.isreg():
                raise ArchiveError(f"member {name} is not a regular file")
            if info.size != member.size:
                raise ArchiveError(
                    f"member {name} is {info.size} bytes; the manifest says {member.size}"
                )
            seen.add(name)
            stream = _CheckedStream(self._open(info), member, self.hasher)
            yield member, stream
            stream.finish()
        missing = [name for name in self.entries if name not in seen]
        if missing:
            raise ArchiveError(f"member {missing[0]} is missing (the archive is truncated?)")

    def _check_end(self) -> None:
        """:raises ArchiveError: anything but zeros after the end of the archive (tar
        has read ahead of it: what it read past its end is in the stream's tail)."""
        try:
            trailing = self.gzip.read(MAX_TRAILING + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ArchiveError(f"the end of the archive is damaged: {exc}") from None
        read_ahead = self.stream.after(self.tar.offset)
        if len(trailing) > MAX_TRAILING or (read_ahead + trailing).strip(b"\0"):
            raise ArchiveError("the archive has data after its end")

    def _open(self, info: tarfile.TarInfo) -> BinaryIO:
        try:
            return self.tar.extractfile(info)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ArchiveError(f"member {info.name} cannot be read: {exc}") from None

    def _read_all(self, info: tarfile.TarInfo) -> bytes:
        try:
            data = self.tar.extractfile(info).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ArchiveError(f"member {info.name} cannot be read: {exc}") from None
        if len(data) != info.size:
            raise ArchiveError(f"member {info.name} is truncated")
        return data

    def close(self) -> None:
        self.hasher.shutdown()
        self.tar.close()
        self.gzip.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Tail:
    """A read-only stream that remembers its last two reads (what tar read ahead)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.position = 0
        self.previous = self.last = b""

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.previous, self.last = self.last, data
        self.position += len(data)
        return data

    def after(self, offset: int) -> bytes:
        """The bytes read beyond ``offset`` (as far as the last two reads go back)."""
        tail = self.previous + self.last
        beyond = self.position - offset
        return tail[-beyond:] if beyond > 0 else b""


class _CheckedStream(io.RawIOBase):
    """A member's bytes, hashed as they are read; ``finish`` reads what is left and raises
    :class:`ArchiveError` unless size and sha256 are the manifest's."""

    def __init__(self, raw: BinaryIO, member: Member, hasher: ThreadPoolExecutor):
        self.raw = raw
        self.member = member
        self.digest = hashlib.sha256()
        self.size = 0
        # A chunk is hashed in a helper thread while the next one is decompressed.
        self.hasher = hasher
        self.hashed = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        try:
            data = self.raw.read(size)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ArchiveError(f"member {self.member.name} cannot be read: {exc}") from None
        if self.hashed is not None:
            self.hashed.result()
        self.hashed = self.hasher.submit(self.digest.update, data)
        self.size += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def finish(self) -> None:
        while self.read(CHUNK):
            pass
        if self.hashed is not None:
            self.hashed.result()
        if self.size != self.member.size:
            raise ArchiveError(f"member {self.member.name} is truncated")
        if self.digest.hexdigest() != self.member.sha256:
            raise ArchiveError(f"member {self.member.name} does not match its sha256")
