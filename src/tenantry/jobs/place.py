"""Where a home's jobs are kept: a SQLite file in the home by default (one host, nothing
else to run), or ``TENANTRY_JOBS_URL``'s PostgreSQL (a schema of its own; any number of
hosts). One store per process and place, made when first asked for."""

from __future__ import annotations

import os
import threading

from sqlalchemy import create_engine

from tenantry.jobs.store import JobStore

JOBS_URL_ENV_VAR = "TENANTRY_JOBS_URL"
JOBS_FILE = ".jobs.db"
JOBS_SCHEMA = "tenantry_jobs"

_stores: dict[tuple[str, str | None], JobStore] = {}
_lock = threading.Lock()


def jobs_url() -> str | None:
    """``TENANTRY_JOBS_URL``, checked. :raises ValueError: it is set but not PostgreSQL's."""
    url = os.environ.get(JOBS_URL_ENV_VAR, "").strip() or None
    if url is not None and not url.startswith(("postgresql://", "postgresql+psycopg://")):
        raise ValueError(
            f"{JOBS_URL_ENV_VAR} must be a postgresql:// URL (or unset: jobs in the home)"
        )
    return url


def jobs_store(tenants_dir: os.PathLike[str]) -> JobStore:
    """The store of the home whose ``tenants/`` folder is ``tenants_dir``."""
    url = jobs_url()
    place = (str(tenants_dir), url)
    with _lock:
        store = _stores.get(place)
        if store is None:
            if url is None:
                engine = create_engine(f"sqlite:///{os.path.join(tenants_dir, JOBS_FILE)}")
                store = JobStore(engine)
            else:
                engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
                store = JobStore(engine, schema=JOBS_SCHEMA)
            store.create()
            _stores[place] = store
        return store


def forget_stores() -> None:
    """Drop this process's stores (a forked child must not use its parent's connections)."""
    with _lock:
        for store in _stores.values():
            store.after_fork()
        _stores.clear()
