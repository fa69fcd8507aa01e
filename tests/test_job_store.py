"""The job store on every backend: fair turns, caps, leases, keys, retries, cancel.

These are the guarantees every runner builds on, tested against the store itself on a
SQLite file, on a PostgreSQL schema and under a prefix of its own on Redis; several
processes claiming at once are in the test that forks.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import secrets
import time

import psycopg
import pytest
import redis
from sqlalchemy import create_engine, update

from tenantry.jobs.redis_store import RedisJobStore
from tenantry.jobs.store import JobQueueFull, JobStore, NewJob
from tenantry.jobs.tables import CANCELLED, FAILED, MAX_LOST, QUEUED, RUNNING, SUCCEEDED, jobs
from tests import postgres

LEASE = 30.0
REDIS_URL = "redis://127.0.0.1:6379/0"

Store = JobStore | RedisJobStore

# Each test runs on each store. The SQL ones take conftest's database_url, so that its
# guard sees the PostgreSQL runs; Redis takes SQLite's (unused: no database is made), so
# the guard counts the Redis runs with SQLite's.
pytestmark = pytest.mark.parametrize(
    ("database_url", "job_backend"),
    [
        pytest.param("sqlite", "sql", id="sqlite"),
        pytest.param(postgres.PARAM_ID, "sql", id=postgres.PARAM_ID),
        pytest.param("sqlite", "redis", id="redis"),
    ],
    indirect=True,
)


def open_store(url: str, place: str | None) -> Store:
    """The store at ``url``: ``place`` is its PostgreSQL schema, or its Redis prefix."""
    if url.startswith("redis://"):
        return RedisJobStore(url, prefix=place)
    return JobStore(create_engine(url), schema=place)


def make_store(url: str, place: str | None) -> Store:
    store = open_store(url, place)
    store.create()
    return store


@pytest.fixture
def job_backend(request) -> str:
    """Which kind of store: "sql" (the database_url's) or "redis"."""
    if request.param == "redis":
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.RedisError as exc:
            pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return request.param


@pytest.fixture
def store_place(tmp_path, database_url, job_backend):
    """Where a store lives: a SQLite file, a schema of its own on PostgreSQL, or keys
    under a prefix of its own on Redis."""
    if job_backend == "redis":
        prefix = f"tenantry:test:{secrets.token_hex(4)}:"
        yield REDIS_URL, prefix
        client = redis.Redis.from_url(REDIS_URL)
        while found := list(itertools.islice(client.scan_iter(f"{prefix}*", count=1000), 1000)):
            client.delete(*found)
        return
    if database_url is None:
        yield f"sqlite:///{tmp_path / 'jobs.db'}", None
        return
    schema = f"tenantry_jobs_{secrets.token_hex(4)}"
    yield database_url, schema
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def store(store_place) -> Store:
    return make_store(*store_place)


def job(tenant: str = "acme", **fields) -> NewJob:
    return NewJob(tenant=tenant, module="notes", name="purge", args="[]", **fields)


def enqueue(store: Store, tenant: str = "acme", max_queued=1000, max_running=2, **fields):
    return store.enqueue(job(tenant, **fields), max_queued=max_queued, max_running=max_running)[0]


def state(store: Store, tenant: str, job_id: str) -> str:
    return store.get(tenant, job_id)["state"]


def backlog(store: Store, tenant: str, count: int, max_running: int = 20_000) -> None:
    """``count`` due jobs of ``tenant``, written at once (enqueueing them one by one would
    take a minute on SQLite), and the counters set from them. Redis has no table to write:
    there they are enqueued one by one (a few seconds), with room for them all in the queue
    and ``max_running`` as the test's first job set it."""
    if isinstance(store, RedisJobStore):
        for _ in range(count):
            enqueue(store, tenant, max_queued=10**9, max_running=max_running)
        return
    row = {
        "tenant": tenant, "module": "notes", "name": "purge", "args": "[]", "key": None,
        "state": QUEUED, "attempt": 0, "failures": 0, "lost": 0, "retries": 0,
        "timeout": 600.0, "run_at": 0.0, "enqueued": 0.0, "cancel": False,
    }  # fmt: skip
    with store.engine.begin() as connection:
        connection.execute(jobs.insert(), [{**row, "id": f"{n:032x}"} for n in range(count)])
    store.recount()


def test_a_job_goes_from_queued_to_running_to_succeeded(store):
    job_id = enqueue(store)
    assert state(store, "acme", job_id) == QUEUED
    claimed = store.claim(LEASE)
    assert (claimed.id, claimed.tenant, claimed.attempt) == (job_id, "acme", 1)
    assert state(store, "acme", job_id) == RUNNING
    assert store.finish(job_id, claimed.lease, result={"purged": 3}) == SUCCEEDED
    shown = store.get("acme", job_id)
    assert (shown["state"], shown["result"], shown["error"]) == (SUCCEEDED, {"purged": 3}, None)
    assert shown["enqueued"] <= shown["started"] <= shown["finished"]
    assert store.claim(LEASE) is None
    assert store.counts() == {"acme": (0, 0)} == {t: c for t, c in store.recount().items()}


def test_another_tenant_does_not_see_a_job(store):
    job_id = enqueue(store, "acme")
    assert store.get("globex", job_id) is None
    assert store.cancel("globex", job_id) is None
    assert store.list("globex") == ([], 0)
    assert state(store, "acme", job_id) == QUEUED


def test_tenants_take_turns_behind_a_backlog(store):
    """10 000 of A's jobs queued: B's new job is the next one claimed after A's turn."""
    enqueue(store, "a", max_queued=20_000, max_running=20_000)
    backlog(store, "a", 10_000)
    first = store.claim(LEASE)
    assert first.tenant == "a"
    started = time.perf_counter()
    b_job = enqueue(store, "b")
    claimed = store.claim(LEASE)
    took = time.perf_counter() - started
    assert (claimed.tenant, claimed.id) == ("b", b_job)
    assert took < 1.0  # the promise; the figure itself is printed by make stress
    assert store.claim(LEASE).tenant == "a"  # then A again: B has nothing due


def test_at_most_max_running_of_a_tenant_run_at_once(store):
    for _ in range(5):
        enqueue(store, "acme", max_running=2)
    enqueue(store, "globex", max_running=2)
    claimed = [store.claim(LEASE) for _ in range(4)]
    tenants = [c.tenant if c else None for c in claimed]
    assert sorted(t for t in tenants if t) == ["acme", "acme", "globex"]
    assert tenants[-1] is None  # acme at its cap, globex empty
    done = next(c for c in claimed if c and c.tenant == "acme")
    store.finish(done.id, done.lease)
    assert store.claim(LEASE).tenant == "acme"  # a slot came free


def test_a_full_queue_refuses_the_next_job(store):
    for _ in range(3):
        enqueue(store, "acme", max_queued=3)
    with pytest.raises(JobQueueFull, match="MAX_QUEUED_JOBS is 3"):
        enqueue(store, "acme", max_queued=3)
    enqueue(store, "globex", max_queued=3)  # another tenant's queue is its own
    claimed = store.claim(LEASE)
    store.finish(claimed.id, claimed.lease)
    enqueue(store, "acme", max_queued=3)  # a place came free


def test_a_key_names_one_unfinished_job(store):
    first = enqueue(store, key="nightly")
    assert store.enqueue(job(key="nightly"), 1000, 2) == (first, False)
    assert store.enqueue(job("globex", key="nightly"), 1000, 2)[1] is True  # per tenant
    claimed = store.claim(LEASE, skip=frozenset({"globex"}))
    assert store.enqueue(job(key="nightly"), 1000, 2) == (first, False)  # running: still it
    store.finish(claimed.id, claimed.lease)
    again, new = store.enqueue(job(key="nightly"), 1000, 2)
    assert new and again != first  # finished: a new one


def test_a_delayed_job_waits(store):
    job_id = enqueue(store, delay=1.5)
    assert store.claim(LEASE) is None
    time.sleep(1.6)
    assert store.claim(LEASE).id == job_id


def test_tenants_whose_jobs_all_wait_do_not_starve_the_others(store):
    """Forty tenants with only delayed jobs come first in turn; a tenant behind them with
    a job due still gets it claimed."""
    for n in range(40):
        enqueue(store, f"early-{n:02d}", delay=3600)
    due = enqueue(store, "zz-late")
    claimed = store.claim(LEASE)
    assert claimed is not None and claimed.id == due


def test_a_failure_is_retried_after_its_delay_then_fails(store):
    job_id = enqueue(store, retries=1)
    first = store.claim(LEASE)
    assert store.finish(job_id, first.lease, error="boom", retry_after=1.0) == QUEUED
    assert store.claim(LEASE) is None  # not before its delay
    time.sleep(1.1)
    second = store.claim(LEASE)
    assert second.attempt == 2
    assert store.finish(job_id, second.lease, error="boom again", retry_after=2.0) == FAILED
    shown = store.get("acme", job_id)
    assert (shown["state"], shown["error"], shown["attempt"]) == (FAILED, "boom again", 2)
    assert store.counts()["acme"] == (0, 0)


def test_a_lost_runner_hands_its_job_back_without_a_failure(store):
    job_id = enqueue(store)
    claimed = store.claim(0.2)
    assert store.requeue_lost() == 0
    time.sleep(0.3)
    assert store.requeue_lost() == 1
    assert state(store, "acme", job_id) == QUEUED
    again = store.claim(LEASE)
    assert (again.id, again.attempt) == (job_id, 2)
    # The old runner comes back: its lease is gone, so it can change nothing.
    assert store.heartbeat(job_id, claimed.lease, LEASE) == (False, False)
    assert store.finish(job_id, claimed.lease, error="late") is None
    assert store.finish(job_id, again.lease, result=1) == SUCCEEDED
    assert store.get("acme", job_id)["result"] == 1


def test_a_job_that_loses_every_runner_fails_in_the_end(store):
    job_id = enqueue(store)
    for _ in range(MAX_LOST):
        assert store.claim(0.0) is not None
        time.sleep(0.01)
        store.requeue_lost()
    shown = store.get("acme", job_id)
    assert (shown["state"], shown["error"]) == (FAILED, f"its runner was lost {MAX_LOST} times")
    assert store.counts()["acme"] == (0, 0)


def test_cancel_before_start_and_while_running(store):
    queued = enqueue(store)
    running = enqueue(store)
    assert store.cancel("acme", queued) == "cancelled"
    claimed = store.claim(LEASE)
    assert claimed.id == running  # the cancelled one is never claimed
    assert store.heartbeat(running, claimed.lease, LEASE) == (True, False)
    assert store.cancel("acme", running) == "stopping"
    assert store.heartbeat(running, claimed.lease, LEASE, progress=(3, 10)) == (True, True)
    assert store.get("acme", running)["progress"] == {"done": 3, "total": 10}
    assert store.finish(running, claimed.lease, cancelled=True) == CANCELLED
    assert store.cancel("acme", running) == "finished"
    assert store.counts()["acme"] == (0, 0)


def test_list_pages_newest_first_and_purge_keeps_the_recent(store):
    ids = [enqueue(store) for _ in range(5)]
    page, total = store.list("acme", limit=2, offset=1)
    assert total == 5 and [j["id"] for j in page] == ids[::-1][1:3]
    claimed = store.claim(LEASE)
    store.finish(claimed.id, claimed.lease)
    assert store.list("acme", state=SUCCEEDED)[1] == 1
    assert store.purge(older_than_days=1) == 0
    finished_long_ago(store, "acme", claimed.id)
    assert store.purge(older_than_days=1) == 1
    assert store.list("acme")[1] == 4


def finished_long_ago(store: Store, tenant: str, job_id: str) -> None:
    """Make a finished job look as if it finished in 1970."""
    if isinstance(store, RedisJobStore):
        store.redis.hset(f"{store.prefix}job:{job_id}", "finished", "1.0")
        store.redis.zadd(f"{store.prefix}finished:{tenant}", {job_id: 1.0})
        return
    with store.engine.begin() as connection:
        connection.execute(update(jobs).where(jobs.c.id == job_id).values(finished=1.0))


def test_dropping_a_tenant(store):
    for _ in range(3):
        enqueue(store, "acme")
    running = store.claim(LEASE)
    enqueue(store, "globex")
    assert store.drop_tenant("acme", queued_only=True) == 2
    assert store.heartbeat(running.id, running.lease, LEASE) == (True, True)  # asked to stop
    assert store.drop_tenant("acme") == 1
    assert "acme" not in store.counts() and store.list("globex")[1] == 1


def test_a_schedule_period_is_taken_once(store):
    def scheduled(period, key="schedule:notes.purge"):
        return store.enqueue_scheduled(
            job(key=key), "notes.purge", period, max_queued=1000, max_running=2
        )

    first = scheduled(600)
    assert first is not None and state(store, "acme", first) == QUEUED
    assert scheduled(600) is None and scheduled(0) is None  # taken, and an earlier one too
    assert scheduled(1200) == first  # a later period finds the run still unfinished: no second
    claimed = store.claim(LEASE)
    store.finish(claimed.id, claimed.lease)
    third = scheduled(1800)
    assert third not in (None, first) and store.list("acme")[1] == 2
    assert store.enqueue_scheduled(
        job("globex"), "notes.purge", 1800, max_queued=1000, max_running=2
    )  # another tenant's schedule of that name is its own
    with pytest.raises(JobQueueFull):
        store.enqueue_scheduled(job(), "notes.other", 600, max_queued=1, max_running=2)
    assert store.enqueue_scheduled(job(), "notes.other", 600, max_queued=5, max_running=2)
    assert abs(store.clock() - time.time()) < 5


def schedule_all(url: str, place: str | None, results) -> None:
    store = open_store(url, place)
    won = [
        period
        for period in range(0, 40)
        if store.enqueue_scheduled(job(), "notes.purge", period, max_queued=1000, max_running=2)
    ]
    results.put(won)


def test_processes_taking_periods_at_once_take_each_once(store_place):
    make_store(*store_place)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=schedule_all, args=(*store_place, results)) for _ in range(3)]
    for worker in workers:
        worker.start()
    won = [period for _ in workers for period in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=30)
    assert len(won) == len(set(won))  # no period twice
    assert won and max(won) == 39


def claim_all(url: str, place: str | None, results) -> None:
    store = open_store(url, place)
    mine = []
    while (claimed := store.claim(LEASE)) is not None:
        mine.append(claimed.id)
        store.finish(claimed.id, claimed.lease, result=json.dumps(claimed.id))
    results.put(mine)


def test_processes_claiming_at_once_take_each_job_once(store_place):
    store = make_store(*store_place)
    ids = {enqueue(store, f"t{n % 5}", max_running=100) for n in range(200)}
    results = multiprocessing.get_context("spawn").Queue()
    workers = [
        multiprocessing.get_context("spawn").Process(target=claim_all, args=(*store_place, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    taken = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    flat = [job_id for mine in taken for job_id in mine]
    assert sorted(flat) == sorted(ids)  # every job once, none twice
    assert sum(store.list(f"t{n}", state=SUCCEEDED)[1] for n in range(5)) == len(ids)
    assert store.recount() == {f"t{n}": (0, 0) for n in range(5)}
