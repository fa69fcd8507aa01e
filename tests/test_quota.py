"""STORAGE_QUOTA counts every byte a tenant holds: stored files, link snapshots not yet
removed, dataset zips and uploads in progress; `tenantry gc` and the server's own sweep
remove what expired."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from sqlalchemy import update

from tenantry.builtin.files.models import release, reserve, used_bytes
from tenantry.builtin.links.models import REDEEM_GRACE, OneTimeLink
from tenantry.data.db import tenant_database
from tenantry.storage.objects import tenant_storage
from tests.conftest import bearer
from tests.server import poll_until
from tests.test_files import limited_tenant

pytestmark = [pytest.mark.usefixtures("storage_backend"), pytest.mark.s3_on_sqlite]


def quota_tenant(home, make_tenant, add_user, login, client, quota: int) -> dict:
    limited_tenant(home, make_tenant, "tight", STORAGE_QUOTA=quota)
    add_user("tight", "root", roles=("admin",))
    return bearer(login("tight", "root"))


def usage(home, slug="tight") -> int:
    database = tenant_database(home, slug)
    try:
        return used_bytes(database)
    finally:
        database.dispose()


@pytest.fixture
def snapshots(home, storage_backend):
    return lambda home, slug="tight": storage_backend.names(home, slug, "links")


def test_link_snapshots_count_and_a_link_past_the_quota_is_507(
    home, client, make_tenant, add_user, login, snapshots
):
    headers = quota_tenant(home, make_tenant, add_user, login, client, 1000)
    assert (
        client.put("/tight/files/a.bin", data=os.urandom(400), headers=headers).status_code == 201
    )
    first = client.post("/tight/files/a.bin/link", headers=headers)
    assert first.status_code == 201
    assert usage(home) == 800  # the file and its snapshot
    refused = client.post("/tight/files/a.bin/link", headers=headers)
    assert (refused.status_code, refused.json["error"]) == (507, "insufficient_storage")
    assert len(snapshots(home)) == 1  # nothing was left behind
    # Replacing the file does not free what the snapshot pins.
    assert (
        client.put("/tight/files/a.bin", data=os.urandom(700), headers=headers).status_code == 507
    )
    assert client.get(first.json["addr"]).status_code == 200  # redeemed: its snapshot goes
    assert usage(home) == 400
    assert client.post("/tight/files/a.bin/link", headers=headers).status_code == 201


def test_an_upload_in_progress_holds_its_declared_size(home, client, make_tenant, add_user, login):
    headers = quota_tenant(home, make_tenant, add_user, login, client, 1000)
    database, storage = (
        tenant_database(home, "tight"),
        tenant_storage(home.instance_dir("tight") / "storage", "tight"),
    )
    try:
        held = reserve(database, storage, 700, 1000)  # another upload, still streaming
        assert usage(home) == 700
        refused = client.put("/tight/files/b.bin", data=b"x" * 400, headers=headers)
        assert (refused.status_code, refused.json["error"]) == (507, "insufficient_storage")
        release(database, held)
    finally:
        database.dispose()
    assert client.put("/tight/files/b.bin", data=b"x" * 400, headers=headers).status_code == 201
    assert usage(home) == 400  # its own reservation went with it


def test_a_dataset_zip_counts_and_one_past_the_quota_is_507(
    home, client, make_tenant, add_user, login, snapshots, storage_backend
):
    headers = quota_tenant(home, make_tenant, add_user, login, client, 6000)
    client.put("/tight/files/data.bin", data=os.urandom(2000), headers=headers)
    client.post("/tight/api/datasets", json={"name": "d", "files": ["data.bin"]}, headers=headers)
    zipped = client.post("/tight/api/datasets/download", json={"datasets": ["d"]}, headers=headers)
    assert zipped.status_code == 201
    (zip_name,) = snapshots(home)
    zip_size = storage_backend.size(home, "tight", "links", zip_name)
    assert zip_size > 2000 and usage(home) == 2000 + zip_size
    refused = client.post("/tight/api/datasets/download", json={"datasets": ["d"]}, headers=headers)
    assert (refused.status_code, refused.json["error"]) == (507, "insufficient_storage")
    assert snapshots(home) == [zip_name]
    assert storage_backend.names(home, "tight", "incoming") == []


def test_gc_removes_expired_snapshots_at_once(
    home, client, make_tenant, add_user, login, tenantry, snapshots
):
    headers = quota_tenant(home, make_tenant, add_user, login, client, 10_000)
    client.put("/tight/files/a.bin", data=b"a" * 1000, headers=headers)
    for _ in range(3):
        client.post("/tight/files/a.bin/link", json={"ttl": 1}, headers=headers)
    assert usage(home) == 4000
    time.sleep(1.1)
    result = tenantry("gc", "tight")
    assert result.exit_code == 0, result.output
    assert result.output == "tight: removed 3 files\n"
    assert snapshots(home) == [] and usage(home) == 1000
    assert tenantry("gc").output.count("removed 0 files") >= 1
    assert tenantry("gc", "nobody").exit_code == 2


def test_gc_removes_orphans_a_failed_removal_left_and_keeps_what_is_named(
    home, client, make_tenant, add_user, login, tenantry, registry, storage_backend
):
    """A removal after a commit (a redeemed link's snapshot, a replaced file's blob) that
    fails does not fail the request: the link is served, and the sweep removes the orphan.
    Bytes no record names are orphans too; what a record or a live link names stays."""
    headers = quota_tenant(home, make_tenant, add_user, login, client, 10_000)
    client.put("/tight/files/a.bin", data=b"a" * 100, headers=headers)
    live = client.post("/tight/files/a.bin/link", headers=headers).json["addr"]
    used = client.post("/tight/files/a.bin/link", headers=headers).json["addr"]
    storage = registry.lookup("tight").app.extensions["tenantry.storage"]

    def refuse(uid, after=None):
        raise OSError("the store is away")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage, "drop_snapshot", refuse)
        redeemed = client.get(used)
        assert (redeemed.status_code, redeemed.data) == (200, b"a" * 100)
        assert client.get(used).status_code == 410
    database = registry.lookup("tight").app.extensions["tenantry.db"]
    with database.transaction() as session:  # a download may read it until an hour past
        session.execute(  # its expiry: that hour has passed
            update(OneTimeLink)
            .where(OneTimeLink.uid == used.split("uid=")[1])
            .values(expires_at=time.time() - REDEEM_GRACE - 1)
        )
    stray = tenant_storage(home.instance_dir("tight") / "storage", "tight")
    with stray.lock():
        stray.commit(stray.receive([b"no record names me"], max_size=100, room=100))
    assert len(storage_backend.names(home, "tight", "blobs")) == 2
    assert len(storage_backend.names(home, "tight", "links")) == 2

    result = tenantry("gc", "tight")
    assert result.exit_code == 0, result.output
    assert result.output == "tight: removed 2 files\n"
    assert storage_backend.names(home, "tight", "blobs") == [hashlib.sha256(b"a" * 100).hexdigest()]
    assert storage_backend.names(home, "tight", "links") == [live.split("uid=")[1]]
    assert client.get(live).data == b"a" * 100


def test_the_server_sweeps_expired_snapshots_on_its_own(
    home, make_tenant, add_user, login, client, snapshots
):
    from werkzeug.test import Client

    from tenantry.server.dispatch import TenantDispatcher
    from tenantry.server.registry import TenantRegistry

    headers = quota_tenant(home, make_tenant, add_user, login, client, 10_000)
    client.put("/tight/files/a.bin", data=b"a" * 100, headers=headers)
    client.post("/tight/files/a.bin/link", json={"ttl": 1}, headers=headers)
    registry = TenantRegistry(home, check_interval=0, sweep_interval=0.2)
    try:
        Client(TenantDispatcher(registry)).get("/healthz")
        Client(TenantDispatcher(registry)).get("/tight/")  # the sweeper starts with a worker
        poll_until(lambda: snapshots(home) == [], timeout=5)
    finally:
        registry.close()
    assert usage(home) == 100
