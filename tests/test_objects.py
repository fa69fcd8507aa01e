"""The object store client against a real S3 API over HTTP (moto's server)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid

import pytest

from tenantry.objects import (
    PART_SIZE,
    NoSuchObject,
    ObjectStore,
    ObjectStoreError,
    StorageLocation,
    TooLarge,
    parse_storage_url,
)
from tests.s3 import CREDENTIALS, MotoServer

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def s3_server():
    with MotoServer() as server:
        yield server


@pytest.fixture
def store(s3_server, monkeypatch) -> ObjectStore:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    store = ObjectStore(f"t-{uuid.uuid4().hex[:20]}", endpoint_url=s3_server.url)
    store.client.create_bucket(Bucket=store.bucket)
    return store


def blocks(count: int, size: int = MiB, fail_after: int | None = None):
    """``count`` blocks of distinct bytes; raise OSError after ``fail_after`` of them."""
    for number in range(count):
        if number == fail_after:
            raise OSError("the client went away")
        yield hashlib.sha256(str(number).encode()).digest() * (size // 32)


def uploads_in_progress(store: ObjectStore) -> list:
    return store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, None),
        ("", None),
        ("s3://bucket", StorageLocation("bucket", "")),
        ("s3://my-bucket.1/tenants/prod/", StorageLocation("my-bucket.1", "tenants/prod")),
    ],
)
def test_a_storage_url_names_a_bucket_and_a_prefix(url, expected):
    assert parse_storage_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["file:///tmp", "s3:/bucket", "s3://", "s3://UPPER", "s3://a", "s3://b..c/x",
     "s3://bucket/../x", "s3://bucket/a b", "s3://user:secret@bucket/x"],
)  # fmt: skip
def test_a_storage_url_that_is_not_one_is_refused_without_repeating_it(url):
    with pytest.raises(ValueError, match="TENANTRY_STORAGE_URL") as refused:
        parse_storage_url(url)
    assert "secret" not in str(refused.value)


def test_a_tenants_prefix_never_holds_another_tenants_keys():
    location = StorageLocation("bucket", "p")
    assert location.tenant_prefix("acme") == "p/acme/"
    assert not "p/acme2/files/x".startswith(location.tenant_prefix("acme"))
    assert StorageLocation("bucket", "").tenant_prefix("acme") == "acme/"


@pytest.mark.parametrize("size", [0, 1, MiB, PART_SIZE - 1, PART_SIZE, 2 * PART_SIZE + 123])
def test_a_body_is_stored_whole_with_its_sha256(store, size):
    body = os.urandom(size)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    stored = store.put_stream("acme/blob", chunks, max_size=size)
    assert (stored.size, stored.sha256) == (size, hashlib.sha256(body).hexdigest())
    assert b"".join(store.read("acme/blob")) == body
    assert store.head("acme/blob").size == size
    assert uploads_in_progress(store) == []


def test_ranges_are_read_as_asked(store):
    body = os.urandom(3 * MiB + 17)
    store.put_stream("k", [body], max_size=len(body))
    assert b"".join(store.read("k", 5, 10)) == body[5:15]
    assert b"".join(store.read("k", 2 * MiB)) == body[2 * MiB :]
    assert b"".join(store.read("k", len(body) - 1, 1)) == body[-1:]
    assert list(store.read("k", 0, 0)) == []
    assert max(len(chunk) for chunk in store.read("k")) <= MiB


def test_a_body_cut_off_midway_leaves_no_object_and_no_upload(store):
    """The object appears whole or not at all: a client gone after two parts' worth."""
    store.put_stream("acme/file", [b"old bytes"], max_size=100)
    with pytest.raises(OSError, match="went away"):
        store.put_stream("acme/file", blocks(40, fail_after=20), max_size=1 << 30)
    assert b"".join(store.read("acme/file")) == b"old bytes"
    with pytest.raises(OSError):
        store.put_stream("acme/new", blocks(40, fail_after=20), max_size=1 << 30)
    assert not store.exists("acme/new")
    assert uploads_in_progress(store) == []


def test_a_body_over_its_limit_is_refused_and_nothing_is_kept(store):
    with pytest.raises(TooLarge):
        store.put_stream("big", blocks(20), max_size=17 * MiB)
    with pytest.raises(TooLarge):
        store.put_stream("small", [b"x" * 11], max_size=10)
    assert not store.exists("big") and not store.exists("small")
    assert uploads_in_progress(store) == []


def test_a_large_upload_holds_one_part_in_memory(store):
    """64 MiB in 1 MiB chunks: the peak of Python allocations stays near one part."""
    tracemalloc.start()
    try:
        stored = store.put_stream("flat", blocks(64), max_size=1 << 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == 64 * MiB
    assert peak < 3 * PART_SIZE, f"peak {peak / MiB:.1f} MiB"


def test_a_copy_is_made_on_the_store_and_outlives_its_source(store):
    store.put_stream("acme/blobs/a", [b"snapshot me"], max_size=100)
    store.copy("acme/blobs/a", "acme/links/uid")
    store.delete("acme/blobs/a")
    assert b"".join(store.read("acme/links/uid")) == b"snapshot me"
    with pytest.raises(NoSuchObject):
        store.copy("acme/blobs/a", "acme/links/other")


def test_missing_objects_and_deletes(store):
    with pytest.raises(NoSuchObject):
        store.read("nope")
    with pytest.raises(NoSuchObject):
        store.head("nope")
    assert store.exists("nope") is False
    store.delete("nope")  # nothing to remove is not an error


def test_listing_a_tenants_prefix_sees_only_its_keys(store):
    for key in ("p/acme/a", "p/acme/b/c", "p/acme2/a", "p/globex/a"):
        store.put_stream(key, [key.encode()], max_size=100)
    listed = sorted(
        info.key for info in store.list(StorageLocation("b", "p").tenant_prefix("acme"))
    )
    assert listed == ["p/acme/a", "p/acme/b/c"]
    assert {info.size for info in store.list("p/acme/")} == {8, 10}


def test_a_missing_bucket_is_a_clear_error_that_names_no_secret(s3_server, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    store = ObjectStore("no-such-bucket-here", endpoint_url=s3_server.url)
    with pytest.raises(ObjectStoreError, match="no-such-bucket-here") as failed:
        store.put_stream("k", [b"x"], max_size=10)
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in str(failed.value)
    assert "NoSuchBucket" in str(failed.value)
    # A HEAD's 404 says nothing of which is missing: still not "no such object".
    for look in (store.head, store.exists, lambda key: store.copy(key, "other")):
        with pytest.raises(ObjectStoreError) as failed:
            look("k")
        assert not isinstance(failed.value, NoSuchObject)


def test_a_read_stopped_early_lets_go_of_its_connection(store):
    store.put_stream("k", blocks(4), max_size=1 << 30)
    for _ in range(30):  # more than the client's pool of 10 connections
        reader = store.read("k")
        assert len(next(reader)) == MiB
        reader.close()
    assert b"".join(store.read("k")) == b"".join(blocks(4))


def test_a_store_that_does_not_answer_is_an_error_not_a_hang(monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    from tests.server import free_port

    store = ObjectStore("bucket", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ObjectStoreError, match="could not store k in bucket bucket"):
        store.put_stream("k", [b"x"], max_size=10)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://bucket/prefix", "keeps tenants' files on local disk only"),
        ("s3://user:secret@bucket/x", "the bucket must be"),
        ("ftp://host/x", "must be s3://BUCKET/PREFIX"),
    ],
)
def test_serve_refuses_object_storage_it_does_not_serve_yet(tenantry, acme, monkeypatch, url, says):
    """Until the routes keep files in the bucket, a host told to would keep them on its own
    disk, where the other hosts never see them: the server must not start."""
    from tenantry.wsgi import server_settings

    monkeypatch.setenv("TENANTRY_STORAGE_URL", url)
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"serve started: {args}"))
    result = tenantry("serve")
    assert result.exit_code == 2
    assert "TENANTRY_STORAGE_URL" in result.output and says in result.output
    assert "secret" not in result.output
    with pytest.raises(ValueError, match="TENANTRY_STORAGE_URL"):
        server_settings()
