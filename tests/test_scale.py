"""Thousands of tenants in one process: loaded apps, memory and open files stay bounded."""

from __future__ import annotations

import gc
import os
import shutil

import pytest
from werkzeug.test import Client

from bench.generate import generate_tenants, small_database_template
from tenantry.home.layout import TenantHome
from tenantry.ops.lifecycle import create_tenant
from tenantry.server.dispatch import TenantDispatcher
from tenantry.server.registry import TenantRegistry

TENANTS = 10_000
MAX_LOADED = 100
WARM_UP = 2_000


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def crowded_home(tmp_path):
    """A home of 10 000 tenants (SQLite), generated in seconds rather than created."""
    home = TenantHome(tmp_path / "crowded")
    create_tenant(home, "seed")
    template = small_database_template(home, "seed", tmp_path / "template.db")
    generate_tenants(home, TENANTS, database_template=template)
    yield home
    shutil.rmtree(home.root, ignore_errors=True)  # about 300 MB: not kept for inspection


def test_ten_thousand_tenants_keep_apps_memory_and_files_bounded(crowded_home):
    registry = TenantRegistry(crowded_home, max_loaded=MAX_LOADED)
    client = Client(TenantDispatcher(registry))
    slugs = [slug for slug in crowded_home.slugs() if slug != "seed"]
    assert len(slugs) == TENANTS

    def touch(batch):
        for slug in batch:
            response = client.get(f"/{slug}/")
            assert response.status_code == 200, response.get_data(as_text=True)
            assert response.json["tenant"] == slug

    # Nothing is loaded up front: only the tenant asked for is built.
    touch(slugs[:1])
    assert registry.builds == 1

    touch(slugs[1:WARM_UP])
    gc.collect()
    rss_warm, files_warm = rss_kib(), open_files()
    touch(slugs[WARM_UP:])
    gc.collect()

    assert registry.builds == TENANTS
    assert len(registry.loaded_slugs()) == MAX_LOADED
    assert registry.loaded_slugs() == slugs[-MAX_LOADED:]
    # 8 000 more apps kept alive would be hundreds of MiB; evicted ones are released.
    growth = rss_kib() - rss_warm
    assert growth < 24 * 1024, f"RSS grew {growth} KiB over {TENANTS - WARM_UP} evictions"
    assert open_files() <= files_warm + 4
    registry.close()
    assert registry.loaded_slugs() == []
