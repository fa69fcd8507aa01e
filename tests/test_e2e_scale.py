"""Many tenants on PostgreSQL: one schema each, one small pool per worker for all of them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench.generate import generate_tenants
from tenantry.data.db import PG_MAX_OVERFLOW, PG_POOL_SIZE, SCHEMA_REVISION, schema_name
from tenantry.ops.migrate import migrate_tenants
from tests import postgres
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

TENANTS = 200
WORKERS = 2


@pytest.mark.parametrize("database_url", [postgres.PARAM_ID], indirect=True)
def test_two_hundred_tenants_one_schema_each_and_one_pool_per_worker(home):
    slugs = generate_tenants(home, TENANTS)
    revisions = migrate_tenants(home)  # in parallel processes
    assert revisions == dict.fromkeys(slugs, SCHEMA_REVISION)
    assert postgres.tenant_schemas() == sorted(schema_name(slug) for slug in slugs)

    peak: dict[str, int] = {}
    done = threading.Event()

    def sample_connections():
        while not done.is_set():
            for process, count in postgres.tenantry_connections().items():
                peak[process] = max(peak.get(process, 0), count)
            done.wait(0.05)

    def status(slug: str) -> None:
        response = httpx.get(f"{server.url}/{slug}/status", timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["database"] == "ok"

    with GunicornServer(home, workers=WORKERS) as server:
        sampler = threading.Thread(target=sample_connections)
        sampler.start()
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                for _ in range(2):
                    list(pool.map(status, slugs))
            workers = {f"tenantry[{pid}]" for pid in server.worker_pids()}
        finally:
            done.set()
            sampler.join()

    # The workers served about 100 tenants each, every one through its worker's one pool.
    assert len(workers) == WORKERS
    assert workers <= set(peak), (workers, peak)
    assert all(peak[worker] <= PG_POOL_SIZE + PG_MAX_OVERFLOW for worker in workers), peak
