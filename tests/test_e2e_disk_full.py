"""A full disk under one tenant: its writes answer 507 with Retry-After (never a 500), its
reads go on, other tenants do not notice, and writes succeed again once room is freed
(real gunicorn, both databases; on SQLite the tenant's database fills up too).

The tenant's folder is put on a small tmpfs of its own, which needs root: elsewhere the
test is skipped with that reason (`make chaos` runs the same fault under traffic)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-1"


@pytest.fixture
def small_disk(home, make_tenant):
    """Tenant ``full``'s folder on a 4 MiB tmpfs; yields the folder, unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root and mount(8)")
    for slug in ("full", "roomy"):
        make_tenant(slug)
        app = create_app(load_config_class(home, slug), home)
        create_user(
            app.extensions["tenantry.db"], guard_of(app).hash_password, "u", PASSWORD, ["admin"]
        )
        app.extensions["tenantry.db"].dispose()
    folder = home.instance_dir("full")
    aside = folder.with_name("full.aside")
    folder.rename(aside)
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        aside.rename(folder)
        pytest.skip(f"tmpfs cannot be mounted here: {mounted.stderr.decode().strip()}")
    try:
        shutil.copytree(aside, folder, dirs_exist_ok=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * size):
                    pass
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_is_a_507_for_its_tenant_only_and_writes_come_back(home, small_disk):
    with GunicornServer(home) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        auth = {}
        for slug in ("full", "roomy"):
            login = client.post(f"/{slug}/auth/login", json={"username": "u", "password": PASSWORD})
            auth[slug] = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert (
            client.put("/full/files/before.txt", content=b"b", headers=auth["full"]).status_code
            == 201
        )

        filler = fill(small_disk)
        put = client.put(
            "/full/files/big.bin", content=os.urandom(256 * 1024), headers=auth["full"]
        )
        assert put.status_code == 507, put.text
        assert put.json()["error"] == "insufficient_storage"
        assert int(put.headers["Retry-After"]) > 0
        assert "Traceback" not in put.text
        dataset = client.post(
            "/full/api/datasets",
            json={"name": "d" * 200, "files": ["before.txt"]},
            headers=auth["full"],
        )
        assert dataset.status_code in (201, 507), dataset.text  # 507 where the database is there
        assert client.get("/full/files/before.txt", headers=auth["full"]).content == b"b"
        assert (
            client.put("/roomy/files/r.txt", content=b"r", headers=auth["roomy"]).status_code == 201
        )
        # Nothing half-written is left behind: the disk stays as full as the filler made it.
        assert "big.bin" not in {
            f["name"] for f in client.get("/full/files", headers=auth["full"]).json()["files"]
        }

        filler.unlink()
        again = client.put("/full/files/big.bin", content=b"x" * 1024, headers=auth["full"])
        assert again.status_code == 201, again.text
        assert client.get("/full/files/big.bin", headers=auth["full"]).content == b"x" * 1024
    assert "Traceback" not in server.log_path.read_text()
