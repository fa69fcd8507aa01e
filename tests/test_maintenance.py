"""tenants down / up: per-tenant maintenance, 503 with Retry-After."""

from __future__ import annotations

import json

import httpx
import pytest

from tenantry.ops.lifecycle import set_maintenance
from tenantry.server.dispatch import SingleTenantApp
from tenantry.server.log import RequestLog
from tenantry.testing import BufferedClient
from tests.conftest import bearer
from tests.server import GunicornServer, poll_until


def test_a_tenant_down_answers_503_with_retry_after_on_every_route(
    tenantry, client, acme, globex, add_user, login
):
    add_user("acme", "alice")
    token = login("acme", "alice")
    result = tenantry("tenants", "down", "acme", "--retry-after", "120")
    assert result.exit_code == 0, result.output
    for method, path in (("GET", "/acme/"), ("GET", "/acme/status"), ("POST", "/acme/auth/login"),
                         ("PUT", "/acme/files/a.txt"), ("GET", "/acme/nope")):  # fmt: skip
        response = client.open(path, method=method, headers=bearer(token))
        assert response.status_code == 503, path
        assert response.headers["Retry-After"] == "120"
        assert response.json["error"] == "service_unavailable"
        assert "maintenance" in response.json["message"]
    host = client.get("/", headers={"Host": "acme.localhost"})
    assert host.status_code == 503
    assert client.get("/globex/").status_code == 200  # other tenants go on

    listed = {row["slug"]: row for row in json.loads(tenantry("tenants", "list", "--json").output)}
    assert listed["acme"]["maintenance"] is True and listed["globex"]["maintenance"] is False
    assert "enabled,maintenance" in tenantry("tenants", "list").output

    assert tenantry("tenants", "up", "acme").exit_code == 0
    assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 200
    assert json.loads(tenantry("tenants", "list", "--json").output)[0]["maintenance"] is False


def test_down_defaults_to_five_minutes_and_a_disabled_tenant_stays_404(
    tenantry, client, acme, registry
):
    assert tenantry("tenants", "down", "acme").exit_code == 0
    assert client.get("/acme/").headers["Retry-After"] == "300"
    standalone = BufferedClient(RequestLog(SingleTenantApp(registry, "acme")))
    assert standalone.get("/").status_code == 503
    tenantry("tenants", "disable", "acme")
    assert client.get("/acme/").status_code == 404


def test_down_refuses_bad_input(tenantry, acme):
    assert tenantry("tenants", "down", "nope").exit_code == 2
    assert tenantry("tenants", "up", "nope").exit_code == 2
    for value in ("0", "86401", "soon"):
        assert tenantry("tenants", "down", "acme", "--retry-after", value).exit_code == 2


def test_set_maintenance_refuses_what_is_not_a_number_of_seconds(home, acme):
    from tenantry.ops.errors import TenantError

    for value in (True, 1.5, "60", 0):
        with pytest.raises(TenantError):
            set_maintenance(home, acme, value)
    assert not home.maintenance_marker(acme).exists()


def test_a_running_server_sees_down_and_up_within_2_s_in_every_worker(home, acme, tenantry):
    with GunicornServer(home, workers=2) as server:
        url = f"{server.url}/acme/"

        def all_answer(status: int) -> bool:
            # 8 fresh connections: both workers answer (gunicorn spreads them)
            return all(
                httpx.get(url, headers={"Connection": "close"}).status_code == status
                for _ in range(8)
            )

        assert all_answer(200)
        tenantry("tenants", "down", "acme", "--retry-after", "7")
        poll_until(lambda: all_answer(503), timeout=2.5)
        assert httpx.get(url).headers["Retry-After"] == "7"
        tenantry("tenants", "up", "acme")

        def none_down() -> bool:
            # The promise is that every worker sees "up" within 2 s; answering 200 also
            # needs the tenant's app built again (its database opened), which a busy
            # machine may make slower: measured apart.
            return not any(
                httpx.get(url, headers={"Connection": "close"}).headers.get("Retry-After") == "7"
                for _ in range(8)
            )

        poll_until(none_down, timeout=2.5)
        poll_until(lambda: all_answer(200), timeout=30)


def test_a_tenant_down_is_not_built_so_its_database_can_be_worked_on(home, client, acme, tenantry):
    assert client.get("/acme/status").status_code == 200  # built, database open
    assert tenantry("tenants", "down", "acme").exit_code == 0
    assert client.get("/acme/status").status_code == 503  # let go of the database
    if not home.database_url:
        for suffix in ("", "-wal", "-shm"):
            home.instance_dir("acme").joinpath("tenant.db" + suffix).unlink(missing_ok=True)
        for _ in range(3):
            assert client.get("/acme/status").status_code == 503
        assert not home.database_file("acme").exists()  # nothing opened, created, migrated
    assert tenantry("tenants", "up", "acme").exit_code == 0
    assert client.get("/acme/status").status_code == 200  # built again (and migrated)
