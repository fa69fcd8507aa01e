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
