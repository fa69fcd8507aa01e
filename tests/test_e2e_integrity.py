"""A stored file and its record change together or not at all, and a download's ETag always
names the bytes sent: on a real gunicorn, with the failure injected in the database."""

from __future__ import annotations

import hashlib
import os
import threading

import httpx
import pytest

from tests.conftest import refuse_writes
from tests.test_e2e_files import auth, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("storage_backend")]

MiB = 1024**2


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_failed_record_write_leaves_the_file_as_it_was(home, server, auth, storage_backend):  # noqa: F811
    url = f"{server.url}/acme/files/report.bin"
    old = os.urandom(MiB)
    assert httpx.put(url, content=old, headers=auth).status_code == 201
    refuse_writes(home, "acme", "stored_files")

    replaced = httpx.put(url, content=os.urandom(MiB), headers=auth)
    assert (replaced.status_code, replaced.json()["error"]) == (500, "internal_error")
    created = httpx.put(f"{server.url}/acme/files/new.bin", content=b"new", headers=auth)
    assert created.status_code == 500

    download = httpx.get(url, headers=auth)
    assert download.content == old
    assert download.headers["ETag"].strip('"') == sha(old)
    assert httpx.get(f"{url}/info", headers=auth).json()["sha256"] == sha(old)
    assert httpx.get(f"{server.url}/acme/files/new.bin", headers=auth).status_code == 404
    assert storage_backend.names(home, "acme", "blobs") == [sha(old)]  # the new bytes went
    assert "Traceback" not in download.text


def test_the_etag_always_names_the_bytes_sent_while_the_file_is_replaced(
    server,  # noqa: F811
    auth,  # noqa: F811
):
    url = f"{server.url}/acme/files/flip.bin"
    versions = [os.urandom(256 * 1024), os.urandom(300 * 1024)]
    httpx.put(url, content=versions[0], headers=auth)
    stop = threading.Event()

    def replace_again_and_again():
        with httpx.Client(headers=auth, timeout=30) as writer:
            turn = 0
            while not stop.is_set():
                turn += 1
                writer.put(url, content=versions[turn % 2])

    writer = threading.Thread(target=replace_again_and_again)
    writer.start()
    mismatches, spliced, seen = [], [], set()
    try:
        with httpx.Client(headers=auth, timeout=30) as reader:
            for _ in range(150):
                whole = reader.get(url)
                assert whole.status_code == 200
                etag = whole.headers["ETag"].strip('"')
                seen.add(etag)
                if sha(whole.content) != etag:
                    mismatches.append(etag)
                # A client resuming: the rest, if the file is still the one it has.
                rest = reader.get(url, headers={"Range": "bytes=1000-", "If-Range": f'"{etag}"'})
                if rest.status_code == 206 and whole.content[:1000] + rest.content not in versions:
                    spliced.append(etag)
                elif rest.status_code == 200 and sha(rest.content) != rest.headers["ETag"].strip(
                    '"'
                ):
                    mismatches.append(rest.headers["ETag"])
    finally:
        stop.set()
        writer.join()
    assert mismatches == [] and spliced == []
    assert seen <= {sha(version) for version in versions}
