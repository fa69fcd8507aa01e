"""Where a home's jobs are kept: in the home, PostgreSQL or Redis, recorded per home like
its database; a process told another place refuses to start (exit 2)."""

from __future__ import annotations

import pytest

from tenantry.jobs.place import (
    JOBS_URL_ENV_VAR,
    PLACE_FILE,
    JobsPlaceError,
    describe_place,
    forget_stores,
    jobs_store,
)
from tenantry.jobs.records import NewJob
from tenantry.jobs.redis_store import RedisJobStore
from tenantry.jobs.store import JobStore

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def fresh_stores():
    forget_stores()
    yield
    forget_stores()


def test_urls_are_recorded_without_their_passwords():
    assert describe_place(None) == "home"
    assert describe_place("redis://:s3cret@cache:6380/2") == "redis://cache:6380/2"
    assert describe_place("postgresql+psycopg://app:pw@db/jobs") == "postgresql://db/jobs"


def test_the_first_store_records_the_place_and_another_is_refused(
    home, acme, monkeypatch, tenantry
):
    monkeypatch.delenv(JOBS_URL_ENV_VAR, raising=False)
    assert isinstance(jobs_store(home.tenants_dir), JobStore)
    assert (home.tenants_dir / PLACE_FILE).read_text().startswith("home\n")
    forget_stores()
    monkeypatch.setenv(JOBS_URL_ENV_VAR, "redis://:pw@127.0.0.1:6379/0")
    with pytest.raises(JobsPlaceError, match=r"keeps its jobs in home.*unset TENANTRY_JOBS_URL"):
        jobs_store(home.tenants_dir)
    for command in (("worker",), ("jobs", "list", "acme"), ("serve", "--no-jobs")):
        refused = tenantry(*command)
        assert refused.exit_code == 2, (command, refused.output)
        assert "keeps its jobs in home" in refused.output and "pw" not in refused.output


def test_an_unknown_kind_of_url_is_refused(home, acme, monkeypatch, tenantry):
    monkeypatch.setenv(JOBS_URL_ENV_VAR, "mysql://db/jobs")
    refused = tenantry("worker")
    assert refused.exit_code == 2 and "postgresql:// or redis://" in refused.output


def test_redis_keeps_each_homes_jobs_apart(tmp_path, monkeypatch):
    """Two homes on one Redis server: each has its own key prefix, so a tenant slug both
    have is two tenants."""
    monkeypatch.setenv(JOBS_URL_ENV_VAR, REDIS_URL)
    first, second = tmp_path / "one" / "tenants", tmp_path / "two" / "tenants"
    stores = [jobs_store(first), jobs_store(second)]
    try:
        assert all(isinstance(store, RedisJobStore) for store in stores)
        assert stores[0].prefix != stores[1].prefix
        job_id, _ = stores[0].enqueue(NewJob("acme", "notes", "purge", "[]"), 10, 2)
        assert stores[0].get("acme", job_id) is not None
        assert stores[1].get("acme", job_id) is None and stores[1].list("acme")[1] == 0
        assert (first / PLACE_FILE).read_text().startswith("redis://127.0.0.1:6379/0\n")
    finally:
        for store in stores:
            store.drop_tenant("acme")
