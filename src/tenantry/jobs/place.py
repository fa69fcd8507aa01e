"""Where a home's jobs are kept, and the home's record of it.

- Without ``TENANTRY_JOBS_URL``: a SQLite file in the home (``tenants/.jobs.db``). One
  host, nothing else to run.
- ``TENANTRY_JOBS_URL=postgresql://...`` (the deployment's database): a schema of its own,
  ``tenantry_jobs``. Any number of hosts.
- ``TENANTRY_JOBS_URL=redis://...``: keys under a prefix of the home's own. Any number of
  hosts.

The first process that keeps a job writes the place in ``tenants/.jobs-place`` (its URL
with no password, and for Redis the home's key prefix), as a home records its database.
A process told another place afterwards refuses to start (exit 2): its jobs would be
somewhere the other processes never look. One store per process and place, made when
first asked for.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import create_engine

from tenantry.jobs.records import Store
from tenantry.jobs.store import JobStore
from tenantry.support.errors import InputRefused

JOBS_URL_ENV_VAR = "TENANTRY_JOBS_URL"
JOBS_FILE = ".jobs.db"
JOBS_SCHEMA = "tenantry_jobs"
PLACE_FILE = ".jobs-place"
IN_THE_HOME = "home"
POSTGRESQL_SCHEMES = ("postgresql://", "postgresql+psycopg://")
REDIS_SCHEMES = ("redis://", "rediss://")

_stores: dict[tuple[str, str | None], Store] = {}
_lock = threading.Lock()


class JobsPlaceError(InputRefused):
    """The jobs would be kept somewhere else than the home's record says."""


def jobs_url() -> str | None:
    """``TENANTRY_JOBS_URL``, checked. :raises JobsPlaceError: set, but not PostgreSQL's
    or Redis's."""
    url = os.environ.get(JOBS_URL_ENV_VAR, "").strip() or None
    if url is not None and not url.startswith(POSTGRESQL_SCHEMES + REDIS_SCHEMES):
        raise JobsPlaceError(
            f"{JOBS_URL_ENV_VAR} must be a postgresql:// or redis:// URL (or unset: jobs in "
            "the home)"
        )
    return url


def describe_place(url: str | None) -> str:
    """A place as the home records it: ``home``, or the URL without user or password."""
    if url is None:
        return IN_THE_HOME
    parts = urlsplit(url)
    scheme = "postgresql" if url.startswith(POSTGRESQL_SCHEMES) else parts.scheme
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{scheme}://{host}{port}{parts.path}"


def check_place(tenants_dir: os.PathLike[str]) -> tuple[str | None, str]:
    """The home's jobs URL and its Redis key prefix, after recording the place if the home
    has no record yet.

    :raises JobsPlaceError: the record names another place, or ``TENANTRY_JOBS_URL`` is
        neither PostgreSQL's nor Redis's.
    """
    url = jobs_url()
    wanted = describe_place(url)
    record = Path(tenants_dir) / PLACE_FILE
    try:
        recorded, _, home_id = record.read_text().strip().partition("\n")
    except FileNotFoundError:
        recorded, home_id = _record(record, wanted)
    if recorded != wanted:
        told = f"{JOBS_URL_ENV_VAR} says {wanted}" if url else f"{JOBS_URL_ENV_VAR} is not set"
        fix = f"unset {JOBS_URL_ENV_VAR}" if recorded == IN_THE_HOME else (
            f"set {JOBS_URL_ENV_VAR} to {recorded} (with its password)"
        )  # fmt: skip
        raise JobsPlaceError(
            f"this home keeps its jobs in {recorded}, but {told}: {fix}; its queued jobs "
            "do not move with a change of place"
        )
    return url, f"tenantry:jobs:{home_id}:"


def _record(record: Path, place: str) -> tuple[str, str]:
    """Write the record unless another process wrote one first; returns what it says."""
    record.parent.mkdir(parents=True, exist_ok=True)
    temp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    temp.write_text(f"{place}\n{secrets.token_hex(8)}\n")
    try:
        os.link(temp, record)  # never replaces a record
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)
    recorded, _, home_id = record.read_text().strip().partition("\n")
    return recorded, home_id


def jobs_store(tenants_dir: os.PathLike[str]) -> Store:
    """The store of the home whose ``tenants/`` folder is ``tenants_dir``.

    :raises JobsPlaceError: the home records another place.
    """
    url = jobs_url()
    place = (str(tenants_dir), url)
    with _lock:
        store = _stores.get(place)
        if store is None:
            url, prefix = check_place(tenants_dir)
            store = _open(tenants_dir, url, prefix)
            store.create()
            _stores[place] = store
        return store


def _open(tenants_dir: os.PathLike[str], url: str | None, prefix: str) -> Store:
    if url is not None and url.startswith(REDIS_SCHEMES):
        # lazy: the redis client loads only in a home whose jobs are kept there
        from tenantry.jobs.redis_store import RedisJobStore

        return RedisJobStore(url, prefix=prefix)
    if url is None:
        return JobStore(create_engine(f"sqlite:///{os.path.join(tenants_dir, JOBS_FILE)}"))
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    return JobStore(engine, schema=JOBS_SCHEMA)


def after_fork() -> None:
    """In a forked child: keep this process's stores (their tables are made, their place
    checked) but let go of the parent's connections; new ones are opened as needed."""
    with _lock:
        for store in _stores.values():
            store.after_fork()


def forget_stores() -> None:
    """Drop this process's stores (a forked child must not use its parent's connections)."""
    with _lock:
        for store in _stores.values():
            store.after_fork()
        _stores.clear()
