"""The audit log on a real 2-worker server: entries made at once by both workers chain in
order, name the client and the request, and the API and the CLI read the same log."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-1"
WRITERS = 8
TURNS = 6


@pytest.fixture
def acme(home, make_tenant):
    make_tenant("acme")
    app = create_app(load_config_class(home, "acme"), home)
    database = app.extensions["tenantry.db"]
    create_user(database, guard_of(app).hash_password, "root", PASSWORD, ["admin"])
    database.dispose()
    return "acme"


def test_entries_from_both_workers_at_once_chain_and_name_their_requests(home, acme, tenantry):
    with GunicornServer(home) as server:
        base = f"{server.url}/acme"
        login = httpx.post(f"{base}/auth/login", json={"username": "root", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        def write(writer: int) -> list[tuple[int, str]]:
            done = []
            for turn in range(TURNS):
                # A new connection each time, so both workers take their share.
                response = httpx.put(
                    f"{base}/files/w{writer}-{turn}", content=b"x", headers=auth, timeout=30
                )
                done.append((response.status_code, response.headers["X-Request-ID"]))
                failed = httpx.post(
                    f"{base}/auth/login",
                    json={"username": f"nobody{writer}", "password": "wrong-password"},
                    timeout=30,
                )
                done.append((failed.status_code, failed.headers["X-Request-ID"]))
            return done

        with ThreadPoolExecutor(WRITERS) as pool:
            results = [item for done in pool.map(write, range(WRITERS)) for item in done]
        recorded = {request_id for status, request_id in results if status in (201, 401)}
        assert {status for status, _ in results} <= {201, 401, 429}
        assert len(recorded) >= WRITERS * TURNS  # most got through the per-worker cap

        page = httpx.get(f"{base}/audit?limit=1000", headers=auth, timeout=30).json()
        served = {entry["request_id"] for entry in page["data"]}
        assert recorded <= served
        assert page["total"] == len(recorded) + 2  # and user.create, auth.login of root
        assert {entry["remote_addr"] for entry in page["data"]} == {"127.0.0.1", None}

    listed = json.loads(tenantry("audit", "acme", "--json").output)
    assert [entry["id"] for entry in listed] == sorted(entry["id"] for entry in page["data"])
    verified = tenantry("audit", "acme", "--verify")
    assert verified.exit_code == 0, verified.output
    assert f"{page['total']} entries, the chain holds" in verified.output
