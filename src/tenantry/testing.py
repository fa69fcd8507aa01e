"""pytest fixtures for endpoint module authors, and the tenant-isolation check.

Installed with tenantry as a pytest plugin (entry point ``pytest11``), so a module's tests
use these fixtures without any set-up::

    def test_notes_are_per_user(tenantry_tenant):
        shop = tenantry_tenant("shop", blueprints=("landing", "notes"))
        alice = shop.headers("user")
        assert shop.client.post("/notes", json={"text": "hi"}, headers=alice).status_code == 201

- ``tenantry_home``: an empty home in a temp folder (PostgreSQL when
  ``TENANTRY_DATABASE_URL`` is set, or when a ``tenantry_database_url`` fixture of yours
  says so; SQLite otherwise).
- ``tenantry_tenant(slug, blueprints=..., settings={...})``: creates a tenant as
  ``tenantry tenants create`` does (``settings`` become class attributes of its config)
  and returns a :class:`TestTenant`: ``.client`` (a test client rooted at the tenant),
  ``.token(role)`` and ``.headers(role)`` (a user of that role, logged in through the
  API), ``.app``.
- ``tenantry_client``: a test client of the whole home, dispatched as gunicorn would.

:func:`isolation_problems` proves that an endpoint module keeps no tenant's state: it
serves two tenants that share the module's routes and reports every request of one tenant
that touched the other's config, database or storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from flask import Config, Flask, current_app, has_app_context
from sqlalchemy import event
from werkzeug.test import Client

from tenantry.data.db import tenant_database
from tenantry.data.users import create_user
from tenantry.home.layout import DATABASE_URL_ENV_VAR, TenantHome
from tenantry.home.loader import load_config_class
from tenantry.home.settings import schedules_of, tenant_modules
from tenantry.jobs.api import JobContext, json_arguments, running
from tenantry.jobs.place import jobs_store
from tenantry.modules.checks import sample_path
from tenantry.ops.lifecycle import create_tenant
from tenantry.server.dispatch import TenantDispatcher
from tenantry.server.log import RequestLog
from tenantry.server.registry import TenantRegistry
from tenantry.server.runner import LEASE_SECONDS, run_claimed
from tenantry.web.auth import guard_of

__all__ = ["BufferedClient", "TestTenant", "isolation_problems", "make_test_tenant"]

PROBE_JSON: dict = {}


class BufferedClient(Client):
    """A werkzeug test client that reads each response whole and closes it, as a server
    does (so the access line is written and the request's context let go)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


class TenantClient(BufferedClient):
    """A test client whose paths are relative to one tenant's root."""

    def __init__(self, application, slug: str):
        super().__init__(application)
        self.prefix = f"/{slug}"

    def open(self, *args, **kwargs):
        if args and isinstance(args[0], str) and args[0].startswith("/"):
            args = (self.prefix + args[0], *args[1:])
        return super().open(*args, **kwargs)


@dataclass
class TestTenant:
    """A tenant made for a test: its slug, app, a client rooted at it, and users."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    slug: str
    home: TenantHome
    registry: TenantRegistry
    client: TenantClient

    @property
    def app(self) -> Flask:
        """The tenant's app, as the server builds it.

        :raises RuntimeError: it cannot start (the reason is in the message).
        """
        tenant = self.registry.lookup(self.slug)
        if tenant is None or tenant.app is None:
            reason = tenant.error if tenant is not None else "unknown or disabled"
            raise RuntimeError(f"tenant {self.slug} cannot start: {reason}")
        return tenant.app

    def add_user(self, username: str, password: str, roles: Iterable[str]) -> None:
        """Create a user directly in the tenant's database."""
        app = self.app
        database = app.extensions["tenantry.db"]
        create_user(database, guard_of(app).hash_password, username, password, list(roles))

    def token(self, role: str = "user", username: str | None = None) -> str:
        """An access token of a new user with ``role`` (``admin`` or ``user``), logged in
        through ``POST /auth/login``."""
        username = username or f"{role}-{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(16)
        self.add_user(username, password, [role])
        response = self.client.post(
            "/auth/login", json={"username": username, "password": password}
        )
        if response.status_code != 200:
            raise RuntimeError(f"login failed: {response.status_code} {response.get_data()}")
        return response.json["access_token"]

    def run_jobs(self) -> list[dict]:
        """Run the tenant's due jobs now, in this process, as a runner would (in its app,
        as the current job, the outcome recorded), until none is due; returns them as
        ``GET /jobs/<id>`` shows them. A failed job with retries left waits its backoff:
        it is not run again by the same call."""
        store = jobs_store(self.home.tenants_dir)
        others = frozenset(slug for slug in self.home.slugs() if slug != self.slug)
        ran = []
        while (claimed := store.claim(LEASE_SECONDS, skip=others)) is not None:
            run_claimed(self.app, self.home, store, claimed, lost=_lease_lost)
            ran.append(claimed.id)
        return [self.app.extensions["tenantry.tenant"].jobs.get(job_id) for job_id in ran]

    def headers(self, role: str = "user", username: str | None = None) -> dict[str, str]:
        """``Authorization`` headers of a new user with ``role``."""
        return {"Authorization": f"Bearer {self.token(role, username)}"}


def _lease_lost() -> None:
    raise RuntimeError("a job's lease was lost while run_jobs ran it")


def make_test_tenant(
    home: TenantHome,
    registry: TenantRegistry,
    slug: str,
    blueprints: Iterable[str] = ("landing",),
    settings: dict | None = None,
) -> TestTenant:
    """Create a tenant in ``home`` (its config class gets ``settings`` as attributes,
    which its modules' ``seed`` sees too)."""
    create_tenant(
        home, slug, name=f"{slug} (test)", blueprints=tuple(blueprints), settings=settings
    )
    application = RequestLog(TenantDispatcher(registry))
    return TestTenant(slug, home, registry, TenantClient(application, slug))


@pytest.fixture
def tenantry_database_url() -> str | None:
    """Where the test tenants' data lives: override it to choose (None: SQLite files)."""
    return os.environ.get(DATABASE_URL_ENV_VAR) or None


@pytest.fixture
def tenantry_home(tmp_path: Path, tenantry_database_url: str | None) -> Iterator[TenantHome]:
    """An empty TENANTRY_HOME in a temp folder; its tenants' schemas are dropped after."""
    root = tmp_path / "tenantry-home"
    (root / "config").mkdir(parents=True)
    home = TenantHome(root, tenantry_database_url)
    yield home
    if home.database_url:
        for slug in home.slugs():
            database = tenant_database(home, slug)
            try:
                database.drop_schema()
            finally:
                database.dispose()


@pytest.fixture
def tenantry_registry(tenantry_home: TenantHome) -> Iterator[TenantRegistry]:
    """The home's registry; it re-checks tenant files on every request (no 1 s wait)."""
    registry = TenantRegistry(tenantry_home, check_interval=0)
    yield registry
    registry.close()


@pytest.fixture
def tenantry_client(tenantry_registry: TenantRegistry) -> Client:
    """A test client of every tenant of the home, dispatched as gunicorn would."""
    return BufferedClient(RequestLog(TenantDispatcher(tenantry_registry)))


@pytest.fixture
def tenantry_tenant(tenantry_home, tenantry_registry) -> Callable[..., TestTenant]:
    """``tenantry_tenant(slug, blueprints=(...), settings={...})`` → :class:`TestTenant`."""

    def make(slug: str, blueprints: Iterable[str] = ("landing",), settings=None) -> TestTenant:
        return make_test_tenant(tenantry_home, tenantry_registry, slug, blueprints, settings)

    return make


# The isolation check ---------------------------------------------------------------------


class _Spy:
    """Records every use of one tenant's config, database or storage while another
    tenant's request is being served."""

    def __init__(self):
        self.problems: list[str] = []
        self.request = "-"
        self.kind = "request"

    def check(self, owner: str, what: str) -> None:
        if not has_app_context():
            return
        serving = current_app.extensions["tenantry.tenant"].slug
        if serving != owner:
            problem = f"{self.request}: a {self.kind} of {serving} used {owner}'s {what}"
            if problem not in self.problems:
                self.problems.append(problem)


class _WatchedConfig(Config):
    """A tenant's config that reports reads made while another tenant is served."""

    def __init__(self, spy: _Spy, owner: str, original: Config):
        super().__init__(original.root_path, original)
        self._spy = spy
        self._owner = owner

    def __getitem__(self, key):
        self._spy.check(self._owner, "config")
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._spy.check(self._owner, "config")
        return super().get(key, default)


class _WatchedCache(dict):
    """A tenant's ``cache`` that reports use while another tenant is served."""

    def __init__(self, spy: _Spy, owner: str, original: dict):
        super().__init__(original)
        self._spy = spy
        self._owner = owner

    def _check(self) -> None:
        self._spy.check(self._owner, "cache")

    def __getitem__(self, key):
        self._check()
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check()
        super().__setitem__(key, value)

    def __contains__(self, key):
        self._check()
        return super().__contains__(key)

    def get(self, key, default=None):
        self._check()
        return super().get(key, default)

    def setdefault(self, key, default=None):
        self._check()
        return super().setdefault(key, default)

    def pop(self, *args):
        self._check()
        return super().pop(*args)


class _Watched:
    """A tenant's database or storage that reports use while another tenant is served."""

    def __init__(self, spy: _Spy, owner: str, what: str, target):
        object.__setattr__(self, "_spy", spy)
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_what", what)
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name):
        self._spy.check(self._owner, self._what)
        return getattr(self._target, name)


def _watch(app: Flask, spy: _Spy) -> None:
    tenant = app.extensions["tenantry.tenant"]
    slug = tenant.slug
    app.config = _WatchedConfig(spy, slug, app.config)
    database = _Watched(spy, slug, "database", tenant.database)
    storage = _Watched(spy, slug, "storage", tenant.storage)
    app.extensions["tenantry.db"] = database
    app.extensions["tenantry.storage"] = storage
    app.extensions["tenantry.tenant"] = replace(
        tenant,
        config=app.config,
        database=database,
        storage=storage,
        cache=_WatchedCache(spy, slug, tenant.cache),
    )
    # Statements on the tenant's engine, even through an engine or session a module kept.
    event.listen(
        tenant.database.engine,
        "before_cursor_execute",
        lambda *_args: spy.check(slug, "database connection"),
    )


def _schedules(home: TenantHome, slug: str) -> list:
    config_class = load_config_class(home, slug)
    return list(schedules_of(config_class, tenant_modules(config_class))[0])


def _run_job(app: Flask, function: Callable, args: tuple) -> None:
    """Run one job as the runner's job process does, minus the process: in the tenant's
    app, as the current job; its failure is the job's own (recorded, not raised)."""
    context = JobContext(secrets.token_hex(16), 1, lambda progress: False)
    # A job that fails is no isolation problem (its leak would be): its error is the job's.
    with app.app_context(), running(context), contextlib.suppress(Exception):
        function(*json.loads(json_arguments(args)))


def isolation_problems(
    home: TenantHome,
    blueprints: Iterable[str],
    requests: Iterable[tuple[str, str, dict | None]] = (),
    slugs: tuple[str, str] = ("iso-a", "iso-b"),
    jobs: Iterable[tuple[Callable, tuple]] = (),
) -> list[str]:
    """Serve two new tenants of ``home`` that enable ``blueprints`` and share their routes,
    and report every request or job of one that used the other's config, database or
    storage.

    Every route of the modules is requested with each method (sample path values, an empty
    JSON body, an admin's token), in the order A, B, A, so that state kept from the first
    tenant's request shows in the second's; then each of ``requests`` (``(method, path,
    json)``, path relative to the tenant root) the same way. Then every job the modules'
    schedules run, and each of ``jobs`` (``(function, args)``), is run in-process for A, B,
    A, as a runner would run it for each tenant (a real runner runs each job in a process
    of its own, so a global does not outlive a job there; this finds the code that relies
    on it). Empty means no leak was seen.
    """
    registry = TenantRegistry(home, check_interval=3600)
    try:
        tenants = [make_test_tenant(home, registry, slug, blueprints) for slug in slugs]
        apps = [tenant.app for tenant in tenants]
        problems = []
        if apps[0].kit is None or apps[0].kit is not apps[1].kit:
            problems.append("the two tenants do not share one route kit")
        headers = {tenant.slug: tenant.headers("admin") for tenant in tenants}
        spy = _Spy()
        for app in apps:
            _watch(app, spy)
        probes = [
            (method, sample_path(rule), PROBE_JSON if method in ("POST", "PUT", "PATCH") else None)
            for rule in apps[0].url_map.iter_rules()
            for method in sorted((rule.methods or set()) - {"OPTIONS", "HEAD"})
        ]
        for method, path, body in [*probes, *requests]:
            for tenant in (tenants[0], tenants[1], tenants[0]):
                spy.request = f"{method} {path}"
                tenant.client.open(path, method=method, json=body, headers=headers[tenant.slug])
        scheduled = [(schedule.job, ()) for schedule in _schedules(home, slugs[0])]
        spy.kind = "job"
        for function, args in [*scheduled, *jobs]:
            for app in (apps[0], apps[1], apps[0]):
                spy.request = f"job {function.__module__}.{function.__qualname__}"
                _run_job(app, function, args)
        return problems + spy.problems
    finally:
        registry.close()
