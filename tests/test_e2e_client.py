"""The Python SDK against a real gunicorn."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import zipfile

import httpx
import pytest

from tenantry.client import TenantClient, TenantryError
from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer, poll_until

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-1"
MiB = 1024 * 1024


@pytest.fixture
def server(home, acme, globex):
    config = home.config_file(acme)
    config.write_text(
        "from datetime import timedelta\n"
        + config.read_text()
        + "    JWT_ACCESS_LIFESPAN = timedelta(seconds=1)\n"
    )
    for slug in (acme, globex):
        app = create_app(load_config_class(home, slug), home)
        create_user(app.extensions["tenantry.db"], guard_of(app).hash_password, "admin",
                    PASSWORD, ["admin"])  # fmt: skip
        app.extensions["tenantry.db"].dispose()
    with GunicornServer(home, workers=2) as server:
        yield server


@pytest.fixture
def client(server):
    with TenantClient(server.url, "globex", retries=8) as client:
        client.login("admin", PASSWORD)
        yield client


def test_full_flow(client, tmp_path):
    assert client.me()["tenant"] == "globex"
    source = tmp_path / "report.csv"
    source.write_bytes(b"id,amount\n" * 1000)
    stored = client.upload("report.csv", source)
    assert stored["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert client.upload("raw.bin", b"\x00\x01" * 10)["size"] == 20
    assert client.upload("stream.bin", io.BytesIO(b"streamed"))["size"] == 8
    assert client.list_files()["total"] == 3
    assert client.info("raw.bin")["size"] == 20

    copy = client.download("report.csv", tmp_path / "copy.csv")
    assert copy.read_bytes() == source.read_bytes()

    addr = client.link("raw.bin", download=True, ttl=60)
    assert client.redeem(addr) == b"\x00\x01" * 10
    with pytest.raises(TenantryError) as gone:
        client.redeem(addr)
    assert (gone.value.status, gone.value.error) == (410, "gone")

    client.create_dataset("sales", "Quarterly", uses=["bi"], files=["report.csv", "raw.bin"])
    assert client.datasets(uses=["bi"], q="quart")["total"] == 1
    assert client.dataset("sales")["size"] == 10020
    bundle = client.download_datasets(["sales"], tmp_path / "sales.zip")
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(archive.namelist()) == ["sales/raw.bin", "sales/report.csv"]

    client.delete_dataset("sales")
    client.delete("raw.bin")
    assert client.list_files()["total"] == 2


def test_errors_carry_the_contracts_codes(server, client):
    with pytest.raises(TenantryError) as missing:
        client.info("nothing.txt")
    assert (missing.value.status, missing.value.error) == (404, "not_found")
    assert "nothing.txt" in missing.value.message
    with pytest.raises(TenantryError) as bad:
        client.upload("no spaces allowed", b"x")
    assert (bad.value.status, bad.value.error) == (400, "bad_request")
    with pytest.raises(TenantryError) as escape:
        client.upload("../../.env", b"x")
    assert escape.value.status in (400, 404)
    with TenantClient(server.url, "globex") as anonymous:
        with pytest.raises(TenantryError) as unauthorized:
            anonymous.me()
        assert unauthorized.value.status == 401
        with pytest.raises(TenantryError) as wrong:
            anonymous.login("admin", "wrong-password")
        assert wrong.value.error == "unauthorized"
    with TenantClient("http://127.0.0.1:9", "globex", retries=0) as nowhere:
        with pytest.raises(TenantryError) as refused:
            nowhere.me()
        assert refused.value.status == 0


def test_refresh_across_an_expired_access_token(server):
    with TenantClient(server.url, "acme") as client:
        first = client.login("admin", PASSWORD)

        def expired():
            response = httpx.get(
                f"{server.url}/acme/auth/me", headers={"Authorization": f"Bearer {first}"}
            )
            return response.status_code == 401

        poll_until(expired, timeout=5)
        assert client.me()["username"] == "admin"
        assert client.token != first


def test_download_resumes_after_the_connection_is_cut(server, client, tmp_path):
    payload = os.urandom(96 * MiB)
    client.upload("big.bin", payload)
    moved = []
    killed = []

    def progress(count):
        moved.append(count)
        if not killed and sum(moved) >= 8 * MiB:
            killed.extend(server.worker_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    target = client.download("big.bin", tmp_path / "big.bin", progress=progress)

    assert killed, "the download was never cut"
    assert target.read_bytes() == payload
    # resumed, not restarted: every byte crossed the wire once
    assert sum(moved) == len(payload)
    assert not (tmp_path / "big.bin.part").exists()
    poll_until(lambda: len(server.worker_pids()) == 2, timeout=10)
