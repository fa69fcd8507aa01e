"""The disk a tenant can fill is its quota, whatever it loops (real gunicorn, 2 workers)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer, poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("storage_backend")]

QUOTA = 64 * 1024
PASSWORD = "correct-horse-1"


@pytest.fixture
def tight(home, make_tenant):
    make_tenant("tight")
    config = home.config_file("tight")
    config.write_text(config.read_text() + f"    STORAGE_QUOTA = {QUOTA}\n")
    app = create_app(load_config_class(home, "tight"), home)
    create_user(
        app.extensions["tenantry.db"], guard_of(app).hash_password, "u", PASSWORD, ["admin"]
    )
    app.extensions["tenantry.db"].dispose()
    return "tight"


def test_a_put_and_link_loop_stops_at_the_quota_and_the_server_sweeps(home, tight, storage_backend):
    def on_disk(slug: str) -> int:
        return storage_backend.total_bytes(home, slug)

    with GunicornServer(home, env={"TENANTRY_SWEEP_INTERVAL": "1"}) as server:
        base = f"{server.url}/tight"
        token = httpx.post(f"{base}/auth/login", json={"username": "u", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        statuses = []
        with httpx.Client(headers=auth, timeout=30) as client:
            for turn in range(60):
                name = f"f{turn % 3}.bin"
                statuses.append(
                    client.put(f"{base}/files/{name}", content=os.urandom(8192)).status_code
                )
                statuses.append(
                    client.post(f"{base}/files/{name}/link", json={"ttl": 2}).status_code
                )
                assert on_disk(tight) <= QUOTA + 8192  # at most one upload in flight over
        assert 507 in statuses and 500 not in statuses
        # Nobody redeems the links: the server removes their snapshots on its own.
        poll_until(lambda: not storage_backend.names(home, tight, "links"), timeout=15)
        assert on_disk(tight) <= 3 * 8192
        with httpx.Client(headers=auth, timeout=30) as client:
            assert client.post(f"{base}/files/f0.bin/link").status_code == 201
            files = ["f0.bin", "f1.bin", "f2.bin"]
            client.post(f"{base}/api/datasets", json={"name": "all", "files": files})
            zips = [
                client.post(f"{base}/api/datasets/download", json={"datasets": ["all"]})
                for _ in range(3)
            ]
            assert [z.status_code for z in zips][-1] == 507
            assert zips[-1].json()["error"] == "insufficient_storage"
            assert on_disk(tight) <= QUOTA


def test_concurrent_chunked_uploads_never_hold_more_than_the_quota(home, tight, storage_backend):
    """Four chunked uploads (no Content-Length) of 40 KiB each at once against a 64 KiB
    quota: each byte is reserved on the quota before it is taken in, so at any moment
    the tenant's bytes on disk stay within the quota, and those that would pass it are
    cut off with 507."""
    size, piece = 40 * 1024, 4 * 1024
    with GunicornServer(home) as server:
        base = f"{server.url}/tight"
        token = httpx.post(f"{base}/auth/login", json={"username": "u", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        stop, peak = threading.Event(), [0]

        def watch() -> None:  # the disk's bytes (a bucket's parts are not listed as they come)
            folder = home.instance_dir("tight") / "storage"
            while not stop.is_set():
                peak[0] = max(peak[0], _bytes_under(folder))
                time.sleep(0.005)

        def body():
            for _ in range(size // piece):
                yield b"x" * piece
                time.sleep(0.02)

        def upload(n: int) -> int:
            return httpx.put(
                f"{base}/files/f{n}.bin", content=body(), headers=auth, timeout=60
            ).status_code

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                codes = list(pool.map(upload, range(4)))
        finally:
            stop.set()
            watcher.join()
    assert sorted(codes).count(201) == 1 and codes.count(507) == 3, codes
    assert peak[0] <= QUOTA + piece, peak[0]


def _bytes_under(folder) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # an upload's temp file, gone meanwhile
            total += path.stat().st_size if path.is_file() else 0
    return total
