"""Authentication through a real gunicorn with two workers, production settings."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tenantry.data.db import tenant_database
from tenantry.data.users import create_user, set_user_active
from tenantry.home.loader import load_config_class
from tenantry.ops.lifecycle import rotate_secret
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer, poll_until, raw_request
from tests.test_auth import forged_headers

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-1"
IN_A_ROW = 20


def add_user(home, slug, username, roles=("user",)):
    app = create_app(load_config_class(home, slug), home)
    database = app.extensions["tenantry.db"]
    try:
        create_user(database, guard_of(app).hash_password, username, PASSWORD, list(roles))
    finally:
        database.dispose()


def fresh(method: str, url: str, **kwargs) -> httpx.Response:
    """One request on its own connection, so successive ones spread over the workers."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return httpx.request(method, url, headers=headers, **kwargs)


def all_status(method, url, status, **kwargs) -> bool:
    return all(fresh(method, url, **kwargs).status_code == status for _ in range(IN_A_ROW))


@pytest.fixture
def server(home, acme, globex):
    for slug in (acme, globex):
        add_user(home, slug, "alice", roles=("admin",))
        add_user(home, slug, "bob")
    with GunicornServer(home, workers=2) as server:
        yield server


def login(server, slug, username="alice", password=PASSWORD) -> str:
    response = fresh(
        "POST", f"{server.url}/{slug}/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_tokens_work_only_at_their_own_tenant(server):
    tokens = {slug: login(server, slug) for slug in ("acme", "globex")}
    for owner, token in tokens.items():
        for slug in tokens:
            response = fresh("GET", f"{server.url}/{slug}/auth/me", headers=auth(token))
            assert response.status_code == (200 if slug == owner else 401)
            if slug != owner:
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["error"] == "unauthorized"


def test_forged_tokens_over_http_are_401_never_500(home, server):
    for name, header in forged_headers(home).items():
        if name == "trailing space":
            continue  # HTTP strips optional whitespace around header values (RFC 9110 5.5)
        status, body = raw_request(server.port, "GET", "/acme/auth/me", {"Authorization": header})
        if name == "100 KB":
            # over gunicorn's header limit: refused by gunicorn itself (the contract's exception)
            assert status in (400, 431), name
        else:
            assert status == 401, name
            assert json.loads(body)["error"] == "unauthorized", name


def test_logout_is_seen_by_both_workers(server):
    token = login(server, "acme")
    assert fresh("POST", f"{server.url}/acme/auth/logout", headers=auth(token)).status_code == 204
    assert all_status("GET", f"{server.url}/acme/auth/me", 401, headers=auth(token))


def test_disabled_user_is_refused_by_both_workers_within_2s(home, server):
    token = login(server, "acme", "bob")
    database = tenant_database(home, "acme")
    set_user_active(database, "bob", False)
    database.dispose()
    poll_until(
        lambda: all_status("GET", f"{server.url}/acme/auth/me", 401, headers=auth(token)),
        timeout=2,
    )
    assert login(server, "globex", "bob")


def test_rotate_secret_ends_tokens_in_both_workers(home, server):
    acme_token, globex_token = login(server, "acme"), login(server, "globex")
    rotate_secret(home, "acme")
    poll_until(
        lambda: all_status("GET", f"{server.url}/acme/auth/me", 401, headers=auth(acme_token)),
        timeout=4,
    )
    assert all_status("GET", f"{server.url}/globex/auth/me", 200, headers=auth(globex_token))


def test_lockout_is_shared_by_both_workers(server):
    wrong = {"username": "bob", "password": "wrong-password"}
    for _ in range(10):
        assert fresh("POST", f"{server.url}/acme/auth/login", json=wrong).status_code == 401
    for _ in range(6):
        response = fresh(
            "POST", f"{server.url}/acme/auth/login", json={"username": "bob", "password": PASSWORD}
        )
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 60
    assert login(server, "acme", "alice")


def test_concurrent_wrong_passwords_are_checked_at_most_the_limit(server):
    """Bursts of 32 wrong passwords at once for one username, over both workers: exactly
    LOGIN_MAX_FAILURES (10) are ever checked (401) before the lock-out; the others are
    429 (the lock-out, or the tenant's concurrency limit), and so is the right password."""
    wrong = {"username": "bob", "password": "wrong-password"}

    def attempt(_):
        response = fresh("POST", f"{server.url}/acme/auth/login", json=wrong)
        locked = response.status_code == 429 and "failed logins" in response.json()["message"]
        return "locked" if locked else response.status_code

    outcomes = []
    with ThreadPoolExecutor(max_workers=32) as pool:
        while "locked" not in outcomes and len(outcomes) < 32 * 8:
            outcomes += pool.map(attempt, range(32))
    assert outcomes.count(401) == 10, outcomes
    assert set(outcomes) <= {401, 429, "locked"}
    right = {"username": "bob", "password": PASSWORD}
    assert fresh("POST", f"{server.url}/acme/auth/login", json=right).status_code == 429


def test_cookie_token_is_ignored_over_http(server):
    token = login(server, "acme")
    response = fresh("GET", f"{server.url}/acme/auth/me", cookies={"access_token": token})
    assert response.status_code == 401
