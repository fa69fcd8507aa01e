"""The platform SDK (PlatformClient) against a real gunicorn with its admin address: an
operator signs a tenant up, its admin signs in on the tenants' address, every call once,
and the API's refusals arrive as TenantryError."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tenantry.client import TenantClient, TenantryError
from tenantry.client.platform import PlatformClient
from tenantry.home.layout import DATABASE_URL_ENV_VAR
from tenantry.platform.operators import MAX_FAILURES, Operators
from tests.server import GunicornServer, poll_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url(monkeypatch):
    """SQLite only: the client speaks HTTP; the database behind the API is the API's business
    (tests/test_e2e_platform_api.py runs the API on both databases)."""
    monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
    return None


OPERATOR_PASSWORD = "correct-horse-1"
TENANT_PASSWORD = "battery-staple-2"


def refusal(call, *args, **kwargs) -> TenantryError:
    with pytest.raises(TenantryError) as refused:
        call(*args, **kwargs)
    return refused.value


def test_signup_flow_and_every_call(home, make_tenant):
    make_tenant("globex")
    make_tenant("initech")
    Operators(home).add("ops", OPERATOR_PASSWORD)
    with (
        GunicornServer(home, workers=2, admin=True) as server,
        PlatformClient(server.admin_url) as platform,
    ):
        token = platform.login("ops", OPERATOR_PASSWORD)
        assert platform.token == token
        assert 14 * 60 < platform.token_expires_at - time.time() <= 15 * 60
        assert platform.me()["name"] == "ops"

        # Signing a tenant up: created, its first admin added, who can sign in at once.
        row = platform.create_tenant("acme", "Acme Corp", hosts=["acme.localhost"])
        assert (row["slug"], row["name"], row["hosts"]) == ("acme", "Acme Corp", ["acme.localhost"])
        added = platform.add_user("acme", "admin", TENANT_PASSWORD, "admin")
        assert added == {"username": "admin", "roles": ["admin"], "active": True}
        with TenantClient(server.url, "acme", retries=0) as tenant:
            poll_until(lambda: _signs_in(tenant, "admin", TENANT_PASSWORD), timeout=2)
            assert tenant.me()["tenant"] == "acme"

        # Tenants: all of them (page by page, whatever the page size), one page, one.
        slugs = ["acme", "globex", "initech"]
        assert [found["slug"] for found in platform.tenants()] == slugs
        assert [found["slug"] for found in platform.tenants(page_size=2)] == slugs
        assert [found["slug"] for found in platform.tenants("ACME")] == ["acme"]
        page = platform.tenants_page(limit=1, offset=1)
        assert ([found["slug"] for found in page["data"]], page["total"]) == (["globex"], 3)
        assert platform.tenant("acme")["name"] == "Acme Corp"

        # Users
        platform.add_user("acme", "bob", TENANT_PASSWORD)
        assert platform.change_user("acme", "bob", role="admin")["roles"] == ["admin"]
        assert platform.change_user("acme", "bob", active=False)["active"] is False
        changed = platform.change_user("acme", "bob", password="new-password-3", active=True)
        assert changed == {"username": "bob", "roles": ["admin"], "active": True}
        assert [user["username"] for user in platform.users("acme")] == ["admin", "bob"]
        platform.delete_user("acme", "bob")
        assert [user["username"] for user in platform.users("acme")] == ["admin"]
        last = refusal(platform.delete_user, "acme", "admin")
        assert (last.status, last.error) == (409, "conflict")

        # Switches
        assert platform.set_maintenance("acme", True, retry_after=30)["maintenance"] is True
        assert platform.set_maintenance("acme", False)["maintenance"] is False
        assert platform.set_enabled("acme", False)["enabled"] is False
        assert platform.set_enabled("acme", True)["enabled"] is True
        assert platform.rotate_secret("acme") is None

        # Backups, jobs, audit
        job = platform.backup("acme")
        assert job in [found["id"] for found in platform.jobs("acme")["data"]]
        assert isinstance(platform.backups("acme"), list)
        since = datetime.now(UTC) - timedelta(minutes=5)
        mine = platform.audit("acme", actor="operator:ops", since=since, limit=500)
        actions = {entry["action"] for entry in mine["data"]}
        assert {"tenant.create", "tenant.disable", "tenant.rotate_secret"} <= actions
        assert mine["total"] == len(mine["data"])
        one = platform.audit("acme", action="tenant.create")
        assert [entry["action"] for entry in one["data"]] == ["tenant.create"]
        verdict = platform.verify_audit("acme")
        assert verdict["ok"] is True and verdict["entries"] >= mine["total"]
        with pytest.raises(TypeError):
            platform.audit("acme", who="ops")

        deleted = platform.delete_tenant("acme")
        assert deleted["deleted"] == "acme"
        gone = refusal(platform.tenant, "acme")
        assert (gone.status, gone.error) == (404, "not_found")
        assert [found["slug"] for found in platform.tenants()] == ["globex", "initech"]


def test_refusals_are_tenantry_errors(home, make_tenant):
    make_tenant("globex")
    operators = Operators(home)
    operators.add("ops", OPERATOR_PASSWORD)
    operators.add("auditor", OPERATOR_PASSWORD, read_only=True)
    operators.add("clumsy", OPERATOR_PASSWORD)
    with GunicornServer(home, workers=2, admin=True) as server:
        with PlatformClient(server.admin_url) as platform:
            wrong = refusal(platform.login, "ops", "not-the-password")
            assert (wrong.status, wrong.error, wrong.retry_after) == (401, "unauthorized", None)
            assert wrong.message and platform.token is None
            anonymous = refusal(platform.tenants)
            assert (anonymous.status, anonymous.error) == (401, "unauthorized")

            platform.login("ops", OPERATOR_PASSWORD)
            duplicate = refusal(platform.create_tenant, "globex")
            assert (duplicate.status, duplicate.error) == (409, "conflict")
            assert "globex" in duplicate.message
            bad = refusal(platform.add_user, "globex", "eve", TENANT_PASSWORD, "root")
            assert (bad.status, bad.error) == (400, "bad_request")

        with PlatformClient(server.admin_url) as auditor:
            auditor.login("auditor", OPERATOR_PASSWORD)
            assert [found["slug"] for found in auditor.tenants()] == ["globex"]
            forbidden = refusal(auditor.create_tenant, "acme")
            assert (forbidden.status, forbidden.error) == (403, "forbidden")
            assert refusal(auditor.set_enabled, "globex", False).status == 403

        # Locked out after too many wrong passwords: 429, with Retry-After.
        with PlatformClient(server.admin_url) as clumsy:
            for _ in range(MAX_FAILURES):
                assert refusal(clumsy.login, "clumsy", "not-the-password").status == 401
            locked = refusal(clumsy.login, "clumsy", OPERATOR_PASSWORD)
            assert (locked.status, locked.error) == (429, "too_many_requests")
            assert 0 < locked.retry_after <= 301

        # A token that is not one (expired, forged): 401, never a silent sign-in.
        with PlatformClient(server.admin_url, token="not.a.token") as forged:
            assert forged.token_expires_at is None
            assert refusal(forged.tenant, "globex").status == 401

    with PlatformClient(server.admin_url, retries=0, timeout=2) as nobody:
        down = refusal(nobody.me)
        assert (down.status, down.error, down.retry_after) == (0, "connection_error", None)


def test_reads_are_retried_and_changes_are_not():
    """Without a server: a GET is tried again after a connection error, a change never is
    (its answer may have been lost after it was made); Retry-After in either form."""
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1 or request.method == "POST":
            raise httpx.ConnectError("cut", request=request)
        if request.url.raw_path == b"/api/tenants/a%2Fb":
            when = "Wed, 21 Oct 2099 07:28:00 GMT"
            body = {"error": "service_unavailable", "message": "down"}
            return httpx.Response(503, json=body, headers={"Retry-After": when})
        return httpx.Response(200, json={"data": [], "total": 0})

    transport = httpx.MockTransport(answer)
    with PlatformClient("http://admin.test/", token="t", transport=transport) as platform:
        assert platform.tenants() == []
        assert calls == ["GET", "GET"]
        assert refusal(platform.rotate_secret, "globex").status == 0
        assert calls[2:] == ["POST"]
        down = refusal(platform.tenant, "a/b")
        assert (down.status, down.error, down.message) == (503, "service_unavailable", "down")
        assert down.retry_after > 365 * 24 * 3600


def _signs_in(client: TenantClient, username: str, password: str) -> bool:
    try:
        client.login(username, password)
    except TenantryError:
        return False
    return True
