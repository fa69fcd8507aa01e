"""The real PostgreSQL the suite also runs on, and the guard that it really did.

Every test that uses the ``home`` fixture runs twice: on SQLite files and on PostgreSQL
schemas, on the server of ``TENANTRY_TEST_DATABASE_URL`` (default: the machine's local
server, database ``test``). When PostgreSQL cannot be reached those runs are skipped with
the reason; when it can be reached, a skipped PostgreSQL run fails the session (see
``conftest.py``), so a broken fixture cannot quietly turn the second backend off.

From the ``test`` database each test session creates a database of its own,
``tenantry_test_<pid>``, so that two sessions (or a session and a developer's data) never
see each other's ``tenant_*`` schemas. Each test starts with no schemas in it; the session
drops it at the end.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SERVER_URL = make_url(os.environ.get("TENANTRY_TEST_DATABASE_URL", DEFAULT_URL))
SESSION_DATABASE = f"tenantry_test_{os.getpid()}"
SESSION_PREFIX = "tenantry_test_"
PARAM_ID = "postgresql"


def session_url() -> str:
    """The URL of this session's own database (made by :func:`create_session_database`)."""
    return SERVER_URL.set(database=SESSION_DATABASE).render_as_string(hide_password=False)


def _connect(database: str = SESSION_DATABASE) -> psycopg.Connection:
    url = SERVER_URL.set(database=database)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        connect_timeout=3,
        autocommit=True,
    )


@functools.cache
def unreachable_reason() -> str | None:
    """Why PostgreSQL cannot be used (None when it can), checked once per session."""
    try:
        with _connect(SERVER_URL.database):
            return None
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {SERVER_URL.render_as_string()} unreachable: {first_line}"


def is_reachable_now() -> bool:
    """A fresh check, not the cached one (for the end-of-session guard)."""
    try:
        with _connect(SERVER_URL.database):
            return True
    except psycopg.Error:
        return False


def create_session_database() -> None:
    """Create this session's database, dropping those of sessions no longer running."""
    with _connect(SERVER_URL.database) as connection:
        names = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'tenantry\\_test\\_%'"
        ).fetchall()
        for (name,) in names:
            pid = name.removeprefix(SESSION_PREFIX)
            if name == SESSION_DATABASE or not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{SESSION_DATABASE}"')


def drop_session_database() -> None:
    with _connect(SERVER_URL.database) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{SESSION_DATABASE}" WITH (FORCE)')


def _schemas(prefix: str) -> list[str]:
    with _connect() as connection:
        rows = connection.execute(
            "SELECT schema_name FROM information_schema.schemata "
            "WHERE schema_name LIKE %s ORDER BY schema_name",
            (prefix.replace("_", "\\_") + "%",),
        ).fetchall()
    return [row[0] for row in rows]


def tenant_schemas() -> list[str]:
    return _schemas("tenant_")


def staging_schemas() -> list[str]:
    """Schemas a restore or clone builds aside (``tenantry_*``): none once it ended."""
    return _schemas("tenantry_")


def drop_tenant_schemas() -> None:
    """Drop every ``tenant_*`` (and staging) schema: each test starts from an empty database."""
    with _connect() as connection:
        for schema in (
            tenant_schemas() + staging_schemas()
        ):  # one at a time: hundreds at once run out of locks
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def tenantry_connections() -> dict[str, int]:
    """Open connections to the test database per tenantry process (application_name)."""
    with _connect() as connection:
        rows = connection.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'tenantry[%' "
            "GROUP BY application_name"
        ).fetchall()
    return dict(rows)
