"""The object store client against a real S3 API over HTTP (moto's server)."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
import uuid

import pytest

from tenantry.storage.errors import NoSuchObject, ObjectStoreError, TooLarge
from tenantry.storage.location import StorageLocation, parse_storage_url
from tenantry.storage.s3 import PART_SIZE, ObjectStore
from tests.backends import S3_ID
from tests.s3 import CREDENTIALS
from tests.server import free_port

MiB = 1024 * 1024


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
    assert "the bucket no-such-bucket-here does not exist" in str(failed.value)
    # A HEAD's 404 says nothing of which is missing: still not "no such object" (but for
    # exists(), one HEAD before a write, which then fails as above).
    assert store.exists("k") is False
    for look in (store.head, lambda key: store.copy(key, "other")):
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
        ("s3://no-such-bucket-here/prefix", "the bucket no-such-bucket-here does not exist"),
        ("s3://user:secret@bucket/x", "the bucket must be"),
        ("ftp://host/x", "must be s3://BUCKET/PREFIX"),
    ],
)
def test_serve_refuses_a_storage_url_it_cannot_use(
    tenantry, home, s3_server, monkeypatch, url, says
):
    """A malformed URL or a bucket that does not answer stops `tenantry serve` before it
    starts (exit 2, naming the variable, never echoing a credential)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TENANTRY_S3_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("TENANTRY_STORAGE_URL", url)
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"serve started: {args}"))
    result = tenantry("serve")
    assert result.exit_code == 2
    assert "TENANTRY_STORAGE_URL" in result.output and says in result.output
    assert "secret" not in result.output


def test_serve_starts_on_a_bucket_that_answers(tenantry, home, store, s3_server, monkeypatch):
    started = []
    monkeypatch.setenv("TENANTRY_S3_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("TENANTRY_STORAGE_URL", f"s3://{store.bucket}/prod")
    monkeypatch.setattr(os, "execv", lambda *args: started.append(args))
    assert tenantry("serve").exit_code == 0 and started


def test_a_host_whose_storage_url_disagrees_with_the_home_does_not_serve_it(
    tenantry, home, store, s3_server, monkeypatch, tmp_path
):
    """The home records where its files are, with its first tenant: a host started with
    TENANTRY_STORAGE_URL unset (or naming another bucket) would keep files where the other
    hosts never look, so neither the server nor a command runs there."""
    from tenantry.home.layout import TenantHome
    from tenantry.ops.lifecycle import create_tenant

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TENANTRY_S3_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("TENANTRY_STORAGE_URL", f"s3://{store.bucket}/prod/")
    create_tenant(home, "acme")
    assert home.storage_file.read_text().split("\n")[0] == f"s3://{store.bucket}/prod"
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"serve started: {args}"))
    for wrong, says in [
        (None, "TENANTRY_STORAGE_URL is not set (local disk)"),
        (f"s3://{store.bucket}/other", f"TENANTRY_STORAGE_URL says s3://{store.bucket}/other"),
    ]:
        if wrong is None:
            monkeypatch.delenv("TENANTRY_STORAGE_URL")
        else:
            monkeypatch.setenv("TENANTRY_STORAGE_URL", wrong)
        for command in (("serve",), ("tenants", "create", "globex")):
            result = tenantry(*command)
            assert result.exit_code == 2, result.output
            assert f"this home keeps its tenants' files in s3://{store.bucket}/prod" in (
                result.output
            )
            assert says in result.output and f"TENANTRY_STORAGE_URL=s3://{store.bucket}/prod" in (
                result.output
            )
    # A home of tenants made before the record keeps its files on the local disk.
    old = TenantHome(tmp_path / "old", home.database_url)
    create_tenant(old, "initech")
    old.storage_file.unlink()
    monkeypatch.setenv("TENANTRY_STORAGE_URL", f"s3://{store.bucket}/prod")
    result = tenantry("--home", str(old.root), "serve")
    assert result.exit_code == 2 and "files in local" in result.output


def test_an_object_file_reads_and_seeks_like_a_file(store):
    body = os.urandom(2 * MiB + 100)
    store.put_stream("k", [body], max_size=len(body))
    with store.open("k") as handle:
        assert handle.seekable() and handle.size == len(body)
        assert handle.read(10) == body[:10]
        handle.seek(MiB + 5)
        assert handle.read(MiB) == body[MiB + 5 : 2 * MiB + 5]
        assert handle.tell() == 2 * MiB + 5
        handle.seek(-3, os.SEEK_END)
        assert handle.read() == body[-3:]
        assert handle.read() == b""
        handle.seek(0)
        assert handle.read() == body
    with pytest.raises(NoSuchObject):
        store.open("gone")


@pytest.mark.parametrize(
    ("headers", "status", "part"),
    [
        ({}, 200, slice(None)),
        ({"Range": "bytes=100-199"}, 206, slice(100, 200)),
        ({"Range": "bytes=-50"}, 206, slice(-50, None)),
        ({"Range": f"bytes={MiB}-"}, 206, slice(MiB, None)),
        ({"If-None-Match": '"abc"'}, 304, slice(0)),
        ({"Range": "bytes=5-9", "If-Range": '"abc"'}, 206, slice(5, 10)),
        ({"Range": "bytes=5-9", "If-Range": '"old"'}, 200, slice(None)),
        ({"Range": f"bytes={3 * MiB}-"}, 416, slice(0)),
    ],
)
def test_werkzeug_answers_ranges_and_etags_from_an_object_file(store, headers, status, part):
    """What a download needs on object storage: werkzeug's own conditional and Range
    handling, over an object read as it is sent."""
    from werkzeug.exceptions import RequestedRangeNotSatisfiable
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Response
    from werkzeug.wsgi import wrap_file

    body = os.urandom(MiB + 1000)
    store.put_stream("k", [body], max_size=len(body))
    environ = EnvironBuilder(path="/f", headers=headers).get_environ()
    handle = store.open("k", size=len(body))
    response = Response(wrap_file(environ, handle), direct_passthrough=True)
    response.content_length = len(body)
    response.set_etag("abc")
    try:
        response = response.make_conditional(environ, accept_ranges=True, complete_length=len(body))
    except RequestedRangeNotSatisfiable:
        handle.close()
        assert status == 416
        return
    sent = b"".join(response.iter_encoded()) if response.status_code != 304 else b""
    response.close()
    assert (response.status_code, sent) == (status, body[part])
    assert handle.closed


# --- one tenant's bytes in the store ---------------------------------------------------------


@pytest.fixture
def tenant_objects(store, tmp_path):
    from tenantry.storage.objects import TenantObjects

    def make(slug: str) -> TenantObjects:
        return TenantObjects(store, StorageLocation(store.bucket, "p"), slug, tmp_path / slug)

    return make


def keys(store, prefix: str = "") -> list[str]:
    return sorted(info.key for info in store.list(prefix))


def test_an_upload_lands_in_incoming_then_as_its_content_addressed_blob(store, tenant_objects):
    acme = tenant_objects("acme")
    body = b"".join(blocks(9))
    received = acme.receive(blocks(9), max_size=1 << 30, room=1 << 30)
    assert received.key.startswith("p/acme/incoming/")
    assert (received.size, received.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    with acme.lock():
        assert acme.commit(received) is True
    assert keys(store) == [f"p/acme/blobs/{received.sha256}", received.key]
    acme.discard(received)  # the caller's, as for the local disk's temp file
    assert keys(store) == [f"p/acme/blobs/{received.sha256}"]
    with acme.open_blob(received.sha256, received.size) as handle:
        assert handle.read() == body
    again = acme.receive(blocks(9), max_size=1 << 30, room=1 << 30)
    with acme.lock():
        assert acme.commit(again) is False  # the same bytes: the blob is there already
    acme.discard(again)
    assert keys(store) == [f"p/acme/blobs/{received.sha256}"]


def test_an_upload_over_the_quota_or_the_limit_leaves_nothing(store, tenant_objects):
    from tenantry.storage.errors import OverQuota, TooLarge

    acme = tenant_objects("acme")
    with pytest.raises(OverQuota):
        acme.receive(blocks(20), max_size=1 << 30, room=10 * MiB)
    with pytest.raises(TooLarge):
        acme.receive(blocks(20), max_size=10 * MiB, room=1 << 30)
    assert keys(store) == [] and uploads_in_progress(store) == []


def test_a_snapshot_outlives_the_blob_and_is_used_once(store, tenant_objects):
    acme = tenant_objects("acme")
    received = acme.receive([b"version one"], max_size=100, room=100)
    acme.commit(received)
    assert acme.snapshot(received.sha256, "uid-1") == len(b"version one")
    acme.drop_blob(received.sha256)  # the file replaced or deleted
    with pytest.raises(FileNotFoundError):
        acme.open_blob(received.sha256, received.size)
    with acme.open_snapshot("uid-1") as handle:
        assert handle.read() == b"version one"
    acme.drop_snapshot("uid-1")
    with pytest.raises(FileNotFoundError):
        acme.open_snapshot("uid-1")
    with pytest.raises(FileNotFoundError):
        acme.snapshot(received.sha256, "uid-2")


def test_a_built_zip_is_streamed_in_as_a_snapshot_and_its_temp_file_goes(store, tenant_objects):
    acme = tenant_objects("acme")
    temp = acme.temp_path()
    temp.write_bytes(b"".join(blocks(10)))
    assert acme.publish_snapshot(temp, "zip-1") == 10 * MiB
    assert not temp.exists()
    with acme.open_snapshot("zip-1") as handle:
        assert handle.read() == b"".join(blocks(10))


def test_what_one_tenant_holds_is_not_another_tenants(store, tenant_objects):
    """acme and acme2 share a prefix string, never a key: neither opens, snapshots or
    sweeps the other's bytes."""
    acme, acme2 = tenant_objects("acme"), tenant_objects("acme2")
    secret = acme.receive([b"acme's bytes"], max_size=100, room=100)
    acme.commit(secret)
    acme.snapshot(secret.sha256, "acme-link")
    with pytest.raises(FileNotFoundError):
        acme2.open_blob(secret.sha256, secret.size)
    with pytest.raises(FileNotFoundError):
        acme2.snapshot(secret.sha256, "stolen")
    with pytest.raises(FileNotFoundError):
        acme2.open_snapshot("acme-link")
    pending = acme.receive(blocks(9), max_size=1 << 30, room=1 << 30)  # over one part
    assert acme2.sweep_incoming(older_than=-60) == 0
    assert pending.key in keys(store)
    assert keys(store, "p/acme2/") == []
    theirs = acme2.receive(blocks(9), max_size=1 << 30, room=1 << 30)
    assert acme.sweep_incoming(older_than=-60) == 1  # its own only
    assert keys(store, "p/acme2/") == [theirs.key]


def test_hostile_names_never_become_keys(tenant_objects):
    from tenantry.storage.errors import InvalidName

    acme = tenant_objects("acme")
    for uid in ("../globex/links/x", "a/b", "", "x" * 65):
        with pytest.raises(InvalidName):
            acme.open_snapshot(uid)
    for sha in ("../../globex/blobs/" + "a" * 64, "A" * 64, "a" * 63):
        with pytest.raises(InvalidName):
            acme.open_blob(sha, 1)


def test_a_small_upload_is_stored_once_where_it_belongs(store, tenant_objects):
    """Under one part the bytes are known whole before they are stored: no incoming/
    object, no copy; the same bytes again add nothing."""
    acme = tenant_objects("acme")
    received = acme.receive([b"small ", b"file"], max_size=100, room=100)
    assert received.key is None and keys(store) == []
    assert acme.commit(received) is True
    assert keys(store) == [f"p/acme/blobs/{hashlib.sha256(b'small file').hexdigest()}"]
    assert acme.commit(acme.receive([b"small file"], max_size=100, room=100)) is False
    with acme.open_blob(received.sha256, received.size) as handle:
        assert handle.read() == b"small file"
    with pytest.raises(TooLarge):
        acme.receive([b"x" * 101], max_size=100, room=1000)


def test_the_sweep_removes_dead_uploads_and_keeps_live_ones(store, tenant_objects):
    acme = tenant_objects("acme")
    dead = acme.receive(blocks(9), max_size=1 << 30, room=1 << 30)
    temp = acme.temp_path()
    assert acme.sweep_incoming() == 0  # young: uploads in progress
    assert dead.key in keys(store) and temp.exists()
    assert acme.sweep_incoming(older_than=-60) == 2
    assert keys(store) == [] and not temp.exists()


def test_the_lock_serialises_and_the_check_sees_the_bucket(store, s3_server, tenant_objects):
    import threading

    acme = tenant_objects("acme")
    order = []

    def hold(name):
        with acme.lock():
            order.append(f"{name} in")
            time.sleep(0.05)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order[0][0] == order[1][0] and order[2][0] == order[3][0]
    assert acme.check() is True
    gone = ObjectStore("no-such-bucket-here", endpoint_url=s3_server.url)
    from tenantry.storage.objects import TenantObjects

    assert TenantObjects(gone, StorageLocation("x", ""), "acme", acme.folder).check() is False


@pytest.mark.parametrize("storage_backend", [S3_ID], indirect=True)
def test_a_store_that_stops_answering_is_503_and_nothing_is_lost(
    storage_backend, home, acme, registry, client, monkeypatch, add_user, login, tenantry
):
    """While the bucket does not answer: /status names the storage; reading, storing and
    linking a file answer 503 with Retry-After (never a 500), and the rest of the tenant
    goes on. A delete is a change of the record: it is done, and the bytes it freed stay as
    an orphan until the store is back and a sweep removes them."""
    add_user(acme, "alice")
    auth = {"Authorization": f"Bearer {login(acme, 'alice')}"}
    for name in ("a.txt", "gone.txt"):
        assert (
            client.put(f"/acme/files/{name}", data=name.encode(), headers=auth).status_code == 201
        )
    healthy = client.get("/acme/status")
    assert healthy.status_code == 200 and healthy.json["checks"]["storage"] == "ok"
    store_url = os.environ["TENANTRY_S3_ENDPOINT_URL"]

    def rebuild_acme(endpoint: str) -> None:
        monkeypatch.setenv("TENANTRY_S3_ENDPOINT_URL", endpoint)
        later = time.time() + 5 + len(endpoint)
        os.utime(home.config_file("acme"), (later, later))  # its app is built again

    rebuild_acme(f"http://127.0.0.1:{free_port()}")  # a store that refuses connections
    failing = client.get("/acme/status")
    assert failing.status_code == 503
    assert failing.json["checks"] == {"database": "ok", "storage": "failed"}
    for method, path in [
        ("GET", "/acme/files/a.txt"),
        ("PUT", "/acme/files/b.txt"),
        ("POST", "/acme/files/a.txt/link"),
    ]:
        body = b"b" if method == "PUT" else None
        answer = client.open(path, method=method, data=body, headers=auth)
        assert answer.status_code == 503, (method, path, answer.status_code)
        assert answer.json["error"] == "service_unavailable" and answer.headers["Retry-After"]
    assert client.delete("/acme/files/gone.txt", headers=auth).status_code == 204
    assert client.get("/acme/").status_code == 200
    assert tenantry("tenants", "list").exit_code == 0  # commands go on (the claim unread)

    rebuild_acme(store_url)
    assert client.get("/acme/files/a.txt", headers=auth).data == b"a.txt"
    assert len(storage_backend.names(home, "acme", "blobs")) == 2  # gone.txt's orphan
    assert tenantry("gc", "acme").exit_code == 0
    assert storage_backend.names(home, "acme", "blobs") == [hashlib.sha256(b"a.txt").hexdigest()]


def test_a_read_cut_off_mid_object_goes_on_from_where_it_stopped(store, monkeypatch):
    body = os.urandom(3 * MiB + 7)
    store.put_stream("k", [body], max_size=len(body))
    real_read, cuts = store.read, []

    def read_cut_once(key, start=0, length=None):
        reader = real_read(key, start, length)
        if cuts:
            return reader

        def cut():
            yield next(reader)
            reader.close()
            cuts.append(start)
            raise ObjectStoreError("the connection was reset")

        return cut()

    monkeypatch.setattr(store, "read", read_cut_once)
    with store.open("k") as handle:
        assert handle.read() == body
    assert cuts == [0]


def test_a_redeemed_snapshot_goes_when_its_reader_closes(store, tenant_objects):
    acme = tenant_objects("acme")
    received = acme.receive(blocks(1), max_size=1 << 30, room=1 << 30)
    acme.commit(received)
    acme.snapshot(received.sha256, "uid-1", received.size)
    handle = acme.open_snapshot("uid-1", received.size)
    acme.drop_snapshot("uid-1", after=handle)
    assert "p/acme/links/uid-1" in keys(store)  # still readable, should the read be cut
    assert handle.read() == b"".join(blocks(1))
    handle.close()
    assert "p/acme/links/uid-1" not in keys(store)


def test_two_homes_never_share_a_prefix(tenantry, home, store, s3_server, monkeypatch, tmp_path):
    """A home claims its prefix with its first tenant: another home on the same prefix (a
    staging home started with prod's settings, say) is refused before it makes anything
    there, and so is a host whose store holds no claim of the home (another store with a
    bucket of the same name)."""
    from tenantry.home.layout import HomeError, TenantHome
    from tenantry.ops.lifecycle import create_tenant

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TENANTRY_S3_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("TENANTRY_STORAGE_URL", f"s3://{store.bucket}/prod")
    create_tenant(home, "acme")
    assert keys(store, "prod/.tenantry-home") == ["prod/.tenantry-home"]
    other = TenantHome(tmp_path / "staging", home.database_url)
    (other.root / "config").mkdir(parents=True)
    with pytest.raises(HomeError, match="is another tenantry home's"):
        create_tenant(other, "globex")
    assert other.slugs() == [] and not other.storage_file.exists()  # refused before it began
    monkeypatch.setenv("TENANTRY_STORAGE_URL", f"s3://{store.bucket}/staging")
    create_tenant(other, "globex")  # a prefix of its own
    assert keys(store, "staging/.tenantry-home") == ["staging/.tenantry-home"]
    store.delete("prod/.tenantry-home")  # as a store of the same bucket name would lack it
    monkeypatch.setenv("TENANTRY_STORAGE_URL", f"s3://{store.bucket}/prod")
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"serve started: {args}"))
    for command in (("serve",), ("tenants", "list")):
        result = tenantry(*command)
        assert result.exit_code == 2 and "holds no claim of this home" in result.output
