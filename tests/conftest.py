"""Fixtures tell the story: home → tenant → registry → dispatcher → client."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from werkzeug.test import Client

from tenantry.data.db import tenant_database
from tenantry.home.layout import DATABASE_URL_ENV_VAR, TenantHome
from tenantry.ops.lifecycle import create_tenant
from tenantry.server.dispatch import TenantDispatcher
from tenantry.server.hooks import SERVE_JOBS_ENV_VAR
from tenantry.server.log import RequestLog
from tenantry.server.registry import TenantRegistry
from tenantry.storage.location import STORAGE_URL_ENV_VAR, StorageLocation
from tenantry.storage.s3 import S3_ENDPOINT_ENV_VAR, ObjectStore
from tenantry.testing import BufferedClient
from tests import postgres
from tests.backends import S3_ID, LocalBackend, ObjectBackend
from tests.s3 import CREDENTIALS, MotoServer

# Which backend each collected test runs on, and what became of those runs.
_backend_of: dict[str, str] = {}
_outcomes: dict = {"sqlite": 0, postgres.PARAM_ID: 0, "skipped": [], "deselected": 0}
# The same for the storage backends: runs that passed on each, and S3 runs deselected.
_storage_of: dict[str, str] = {}
_storage_outcomes: dict = {"local": 0, S3_ID: 0, "deselected": 0}
# pytest-xdist workers whose counts were added (a worker can be reported down twice)
_workers_counted: set[str] = set()


def _distributing(config) -> bool:
    """This process hands the tests to pytest-xdist's workers and runs none itself."""
    return config.pluginmanager.has_plugin("dsession")


def pytest_sessionstart(session):
    if not _distributing(session.config) and postgres.unreachable_reason() is None:
        postgres.create_session_database()  # one per process: workers never share one


def pytest_collection_modifyitems(config, items):
    # The in-process files, links, datasets and quota tests (marked s3_on_sqlite) run on
    # the object store with SQLite only: the storage code is the same on both databases,
    # which their local runs cover, and the end-to-end, operations and two-host tests run
    # the store on PostgreSQL. That keeps the suite near its 15 minutes.
    items[:] = [
        item
        for item in items
        if not (
            item.get_closest_marker("s3_on_sqlite")
            and getattr(item, "callspec", None)
            and item.callspec.params.get("storage_backend") == S3_ID
            and item.callspec.params.get("database_url") == postgres.PARAM_ID
        )
    ]
    _backend_of.update(
        (item.nodeid, item.callspec.params["database_url"])
        for item in items
        if hasattr(item, "callspec") and "database_url" in item.callspec.params
    )
    _storage_of.update(
        (item.nodeid, item.callspec.params["storage_backend"])
        for item in items
        if hasattr(item, "callspec") and "storage_backend" in item.callspec.params
    )


def pytest_deselected(items):
    """PostgreSQL runs left out on purpose (``-k``, ``-m``) are not missing ones."""
    for item in items:
        _backend_of.pop(item.nodeid, None)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("database_url") == postgres.PARAM_ID:
            _outcomes["deselected"] += 1
        if params.get("storage_backend") == S3_ID:
            _storage_outcomes["deselected"] += 1


def pytest_runtest_logreport(report):
    """Count the runs of each backend, for the guard below."""
    backend = _backend_of.get(report.nodeid)
    if report.skipped and backend == postgres.PARAM_ID:
        _outcomes["skipped"].append(report.nodeid)
    elif backend is not None and report.passed and report.when == "call":
        _outcomes[backend] += 1
    storage = _storage_of.get(report.nodeid)
    if storage is not None and report.passed and report.when == "call":
        _storage_outcomes[storage] += 1


def pytest_sessionfinish(session, exitstatus):
    """Fail, never skip quietly: PostgreSQL is reachable but its runs were skipped, or
    the object-store runs were skipped (moto is a pinned dependency: its server starts).
    Under pytest-xdist each worker hands its counts to the controller, which judges the
    whole run."""
    if not _distributing(session.config) and postgres.unreachable_reason() is None:
        postgres.drop_session_database()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tenantry_outcomes"] = [_outcomes, _storage_outcomes]
        return
    _storage_guard(session)
    outcomes = _outcomes
    if not postgres.is_reachable_now():
        return
    if outcomes["skipped"]:
        problem = (
            f"{len(outcomes['skipped'])} of its test runs were skipped "
            f"(first: {outcomes['skipped'][0]})"
        )
    elif outcomes["sqlite"] and not outcomes[postgres.PARAM_ID] and not outcomes["deselected"]:
        problem = "no test ran on it, though tests ran on SQLite"
    else:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line(
            f"FAILED: PostgreSQL is reachable but {problem}",
            red=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist: a worker's counts join the run's, for the guards above."""
    counted = getattr(node, "workeroutput", {}).get("tenantry_outcomes")
    if counted is None or node.gateway.id in _workers_counted:  # died; or told twice (^C)
        return
    _workers_counted.add(node.gateway.id)
    for totals, worker in zip((_outcomes, _storage_outcomes), counted, strict=True):
        for key, value in worker.items():
            totals[key] += value  # counts, and the list of skipped runs


def _storage_guard(session) -> None:
    """The object-store runs never skip for want of a store (moto is a pinned dependency:
    a server that cannot start fails them); some skip for want of PostgreSQL or Redis,
    like their local twins. Fail if none ran at all while local ones did."""
    outcomes = _storage_outcomes
    if outcomes["local"] and not outcomes[S3_ID] and not outcomes["deselected"]:
        problem = "no test ran on the object store, though tests ran on the local disk"
    else:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line(f"FAILED: {problem}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def s3_server():
    """moto's server for the session (started at the first test that needs it)."""
    with MotoServer() as server:
        yield server


@pytest.fixture(params=["local", S3_ID])
def storage_backend(request, monkeypatch):
    """Where tenants' bytes live: the local disk, or a bucket of the test's own on a real
    S3 API (moto's server). Set in the environment, so apps, CLI runs and gunicorn
    servers of the test use it. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("storage_backend")`` (before other fixtures)."""
    if request.param == "local":
        monkeypatch.delenv(STORAGE_URL_ENV_VAR, raising=False)
        yield LocalBackend()
        return
    server = request.getfixturevalue("s3_server")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    location = StorageLocation(f"t-{uuid.uuid4().hex[:20]}", "suite")
    store = ObjectStore(location.bucket, endpoint_url=server.url)
    store.client.create_bucket(Bucket=location.bucket)
    monkeypatch.setenv(STORAGE_URL_ENV_VAR, f"s3://{location.bucket}/{location.prefix}")
    monkeypatch.setenv(S3_ENDPOINT_ENV_VAR, server.url)
    yield ObjectBackend(store, location)


@pytest.fixture(params=["sqlite", postgres.PARAM_ID])
def database_url(request, monkeypatch) -> str | None:
    """Where tenant data lives: None for SQLite files, else the PostgreSQL URL.

    Set in the environment too, so CLI runs and gunicorn servers of the test use it.
    """
    if request.param == "sqlite":
        monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
        yield None
        return
    reason = postgres.unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.setenv(DATABASE_URL_ENV_VAR, postgres.session_url())
    yield postgres.session_url()
    postgres.drop_tenant_schemas()


@pytest.fixture
def home(tmp_path, database_url) -> TenantHome:
    """An empty TENANTRY_HOME in a temp folder (its config/ there, no tenant yet), on
    SQLite or on PostgreSQL."""
    root = tmp_path / "home"
    (root / "config").mkdir(parents=True)
    return TenantHome(root, database_url)


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Write an importable endpoint module (a fresh name each time, ``{name}`` in the
    source stands for it, ``{{``/``}}`` for braces); returns its name."""
    import importlib
    import textwrap
    import uuid

    root = tmp_path / "modules"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def write(source: str) -> str:
        name = f"mod_{uuid.uuid4().hex[:10]}"
        (root / f"{name}.py").write_text(textwrap.dedent(source).format(name=name))
        importlib.invalidate_caches()
        return name

    return write


@pytest.fixture
def tenantry(home):
    """Run ``tenantry ARGS`` in-process against the test home."""
    from click.testing import CliRunner

    from tenantry.cli import main

    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, ["--home", str(home.root), *args], input=input)

    return run


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
    return BufferedClient(RequestLog(TenantDispatcher(registry)))


@pytest.fixture
def add_user(registry):
    """Add a user to a tenant through the tenant's own app (as POST /users does)."""
    from tenantry.data.users import create_user
    from tenantry.web.auth import guard_of

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


def revision_of(home: TenantHome, slug: str) -> str | None:
    database = tenant_database(home, slug)
    try:
        return database.current_revision()
    finally:
        database.dispose()


def drop_database(home: TenantHome, slug: str) -> None:
    """Remove a tenant's data: its SQLite file, or its PostgreSQL schema."""
    database = tenant_database(home, slug)
    try:
        if database.is_postgres:
            database.drop_schema()
        else:
            database.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database.path}{suffix}").unlink(missing_ok=True)
    finally:
        database.dispose()
    assert not database.exists()


def refuse_writes(home: TenantHome, slug: str, table: str) -> None:
    """Make every insert or update of ``table`` in the tenant's database fail, as a full
    disk or a dropped connection would, right when the row is written."""
    database = tenant_database(home, slug)
    try:
        with database.engine.begin() as connection:
            if database.is_postgres:
                schema = database.schema
                connection.execute(
                    text(
                        f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger AS $$ BEGIN '
                        "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                    )
                )
                connection.execute(
                    text(
                        f'CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "{schema}".{table} '
                        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
                    )
                )
            else:
                for event in ("INSERT", "UPDATE"):
                    connection.execute(
                        text(
                            f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON {table} "
                            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                        )
                    )
    finally:
        database.dispose()


@pytest.fixture(autouse=True)
def _no_serve_jobs_left():
    """``tenantry serve`` run in-process (its exec stubbed) sets the variable that makes a
    gunicorn master start a job runner; no later test's server may inherit it."""
    yield
    os.environ.pop(SERVE_JOBS_ENV_VAR, None)
