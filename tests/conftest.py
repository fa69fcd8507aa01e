"""Fixtures tell the story: home → tenant → registry → dispatcher → client."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from tenantry.dispatch import TenantDispatcher
from tenantry.home import TenantHome
from tenantry.log import RequestLog
from tenantry.registry import TenantRegistry
from tenantry.tenants import create_tenant


@pytest.fixture
def home(tmp_path) -> TenantHome:
    """An empty TENANTRY_HOME in a temp folder."""
    root = tmp_path / "home"
    root.mkdir()
    return TenantHome(root)


@pytest.fixture
def make_tenant(home):
    """Create a tenant the way ``tenantry tenants create`` does; returns its slug."""

    def make(slug: str, **options) -> str:
        options.setdefault("name", slug.capitalize() + " Corp")
        create_tenant(home, slug, **options)
        return slug

    return make


@pytest.fixture
def acme(make_tenant) -> str:
    return make_tenant("acme", hosts=("acme.localhost",))


@pytest.fixture
def globex(make_tenant) -> str:
    return make_tenant("globex")


@pytest.fixture
def registry(home):
    """A registry that re-checks tenant files on every request (no 1 s wait in tests)."""
    registry = TenantRegistry(home, check_interval=0)
    yield registry
    registry.close()


@pytest.fixture
def client(registry) -> Client:
    """A test client over the full dispatcher stack, as gunicorn would call it."""
    return Client(RequestLog(TenantDispatcher(registry)))


@pytest.fixture
def add_user(registry):
    """Add a user to a tenant through the tenant's own app (as POST /users does)."""
    from tenantry.auth import guard_of
    from tenantry.endpoints.auth.models import create_user

    def add(slug: str, username: str, password: str = "correct-horse-1", roles=("user",)):
        app = registry.lookup(slug).app
        database = app.extensions["tenantry.db"]
        return create_user(database, guard_of(app).hash_password, username, password, list(roles))

    return add


@pytest.fixture
def login(client):
    """Log in through the API; returns the access token (asserting success)."""

    def log_in(slug: str, username: str, password: str = "correct-horse-1") -> str:
        response = client.post(
            f"/{slug}/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json["access_token"]

    return log_in


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
