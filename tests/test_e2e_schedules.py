"""Schedules and scheduled backups end to end: real ``tenantry worker`` processes (two of
them, as two hosts would run) queue and run each tenant's schedules, on both databases.

Each run notes itself in its tenant's folder (like the jobs of test_e2e_jobs), so the tests
count the runs from the outside; the job store's own test proves the period race.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tenantry.jobs.place import JOBS_URL_ENV_VAR, forget_stores, jobs_store
from tenantry.jobs.records import NewJob
from tenantry.jobs.schedules import Schedule
from tenantry.ops.backup_schedule import take_backup
from tenantry.ops.backups import list_backups
from tenantry.ops.delete import delete_tenant
from tenantry.ops.restore import restore_tenant
from tests import postgres
from tests.test_e2e_jobs import MODULE as JOBS_MODULE
from tests.test_e2e_jobs import (
    jobs_home,  # noqa: F401 - a fixture, used by name
    notes,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"

MODULE = "schedule_probe"
SOURCE = '''
"""A module with a schedule, for the tests: each run notes the time in its tenant's folder."""

import json
import time
from pathlib import Path

from flask import Blueprint

from tenantry.endpoint import current_job, current_tenant, job

blueprint = Blueprint("schedule_probe", __name__)


@job
def tick():
    path = Path(current_tenant.config["INSTANCE_PATH"]) / "ticks.log"
    with path.open("a") as log:
        log.write(json.dumps({"tenant": current_tenant.slug, "job": current_job().id,
                              "at": time.time()}) + "\\n")


schedules = {"tick": {"every": 2, "job": tick}}
'''


@pytest.fixture
def schedule_home(jobs_home, tmp_path):  # noqa: F811 - the fixture imported above
    (tmp_path / "modules" / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    return jobs_home


def configure(home, slug: str, **values) -> None:
    """Add settings to the tenant's config class (the last thing in its module)."""
    path = home.config_file(slug)
    path.write_text(
        path.read_text() + "".join(f"    {key} = {value!r}\n" for key, value in values.items())
    )


def ticks(home, slug: str) -> list[dict]:
    path = home.instance_dir(slug) / "ticks.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_each_period_runs_once_across_two_workers(schedule_home, make_tenant):
    """Two workers (two hosts' worth) look at every schedule each second; each tenant's
    schedule still runs once per period, at its own moment; one tenant's override changes
    only its own schedule, another's turns it off."""
    home = schedule_home
    blueprints = ("landing", MODULE)
    for slug in ("acme", "globex", "initech"):
        make_tenant(slug, blueprints=blueprints)
    configure(home, "globex", SCHEDULES={f"{MODULE}.tick": {"every": 4}})
    configure(home, "initech", SCHEDULES={f"{MODULE}.tick": None})
    workers = [start_worker(home), start_worker(home)]
    try:
        wait_until(lambda: ticks(home, "acme"), 15, "acme's first tick")
        time.sleep(8)
    finally:
        for worker in workers:
            stop_worker(worker)
    store = jobs_store(home.tenants_dir)
    acme = periods(store, "acme", every=2)
    globex = periods(store, "globex", every=4)
    assert {tick["tenant"] for tick in ticks(home, "acme")} == {"acme"}
    assert len(ticks(home, "acme")) == len(acme)  # each run queued once, and run once
    # Every 2 s over about 8 s, never two runs for one period.
    assert len(acme) == len(set(acme)) and 4 <= len(acme) <= 7, acme
    assert len(globex) == len(set(globex)) and 2 <= len(globex) <= 4, globex
    assert ticks(home, "initech") == []


def periods(store, slug: str, every: float) -> list[int]:
    """The period each of ``slug``'s runs of the tick schedule was queued for, from when it
    was queued (the scheduler queues a period's run once that period is due, in the
    moment it reads the clock)."""
    schedule = Schedule(f"{MODULE}.tick", lambda: None, every=every)
    runs, _ = store.list(slug, limit=100)
    return sorted(schedule.due(slug, run["enqueued"]) for run in runs if run["name"] == "tick")


def test_a_new_tenant_s_schedule_starts_within_10_s(schedule_home, make_tenant):
    home = schedule_home
    make_tenant("acme", blueprints=("landing",))
    worker = start_worker(home)
    try:
        time.sleep(2)  # the worker runs, and knows the home without the new tenant
        make_tenant("globex", blueprints=("landing", MODULE))
        created = time.time()
        first = wait_until(lambda: ticks(home, "globex"), 15, "globex's first tick")[0]
    finally:
        stop_worker(worker)
    assert first["at"] - created < 10


def test_scheduled_backups_are_kept_listed_and_restored(schedule_home, make_tenant, tenantry):
    """BACKUP_EVERY backs the tenant up as its job; the newest BACKUP_KEEP stay; `tenants
    backups` lists them (only the tenant's own); `tenants restore NAME` takes one."""
    home = schedule_home
    make_tenant("acme")
    make_tenant("globex")
    configure(home, "acme", BACKUP_EVERY=3600, BACKUP_KEEP=2)
    worker = start_worker(home)
    try:
        first = wait_until(lambda: list_backups(home, "acme"), 20, "acme's scheduled backup")
    finally:
        stop_worker(worker)
    assert len(first) == 1 and list_backups(home, "globex") == []
    (done,) = jobs_store(home.tenants_dir).list("acme", state="succeeded")[0]
    assert done["result"]["archive"] == first[0].name
    for _ in range(2):
        time.sleep(1.1)  # names hold the second
        take_backup(home, "acme", keep=2)
    kept = list_backups(home, "acme")
    assert len(kept) == 2 and first[0].name not in [stored.name for stored in kept]
    listed = tenantry("tenants", "backups", "acme")
    assert listed.exit_code == 0 and kept[-1].name in listed.output
    assert json.loads(tenantry("tenants", "backups", "acme", "--json").output)[-1]["name"] == (
        kept[-1].name
    )
    assert tenantry("tenants", "backups", "globex").exit_code == 0
    assert tenantry("tenants", "backups", "nope").exit_code == 2  # no such tenant
    store = jobs_store(home.tenants_dir)
    for slug in ("acme", "acme", "globex"):
        store.enqueue(NewJob(slug, MODULE, "tick", "[]"), max_queued=10, max_running=2)
    restored = restore_tenant(home, kept[-1].name, force=True)
    assert restored.slug == "acme"
    # The replaced tenant's queued jobs went with it; another tenant's stay.
    assert store.list("acme", state="queued")[1] == 0
    assert store.list("globex", state="queued")[1] == 1
    assert [stored.name for stored in list_backups(home, "acme")] == [s.name for s in kept]
    refused = tenantry("tenants", "restore", "globex-20260101T000000Z.tar.gz", "--force")
    assert refused.exit_code != 0 and "not among the scheduled backups" in refused.output
    delete_tenant(home, "globex", keep_backup=False)
    assert store.list("globex")[1] == 0  # a deleted tenant's jobs are dropped at once


@pytest.mark.parametrize("database_url", [postgres.PARAM_ID], indirect=True)
def test_two_hosts_on_postgresql_and_redis(schedule_home, make_tenant, monkeypatch):
    """Two hosts' workers, tenants on PostgreSQL and jobs on Redis: each period of each
    tenant's schedule runs once across both; a worker killed with its job (a host lost)
    loses no job: it runs again, on the other one, within 60 s."""
    home = schedule_home
    monkeypatch.setenv(JOBS_URL_ENV_VAR, REDIS_URL)
    forget_stores()
    for slug in ("acme", "globex"):
        make_tenant(slug, blueprints=("landing", MODULE, JOBS_MODULE))
    store = jobs_store(home.tenants_dir)
    workers = [start_worker(home), start_worker(home)]
    try:
        wait_until(lambda: ticks(home, "acme") and ticks(home, "globex"), 15, "first ticks")
        slow, _ = store.enqueue(
            NewJob("acme", JOBS_MODULE, "slow", '["report", 3]'), max_queued=10, max_running=2
        )
        wait_until(lambda: notes(home, "acme"), 15, "the slow job's start")
        running = next(w for w in workers if _children(w.pid))
        os.killpg(running.pid, signal.SIGKILL)  # the worker and the job's process
        running.wait()
        killed = time.monotonic()
        job = wait_for(home, "acme", slow, timeout=60)
        assert time.monotonic() - killed < 60
        time.sleep(4)  # more periods, now on one host
    finally:
        for worker in workers:
            stop_worker(worker)
    assert (job["state"], job["attempt"], job["result"]) == ("succeeded", 2, "report")
    for slug in ("acme", "globex"):
        ticked = periods(store, slug, every=2)
        enqueued = sorted(run["enqueued"] for run in store.list(slug, limit=100)[0])
        assert len(ticked) >= 5 and len(ticked) == len(set(ticked)), (slug, ticked, enqueued)
    for slug in ("acme", "globex"):
        store.drop_tenant(slug)


def _children(pid: int) -> list[str]:
    try:
        return (Path(f"/proc/{pid}/task/{pid}/children")).read_text().split()
    except OSError:
        return []
