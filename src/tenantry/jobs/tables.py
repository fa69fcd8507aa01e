"""The tables of the job store: ``jobs``; ``job_tenants``, each tenant's counters and turn;
``job_schedules``, the last period each tenant's schedule was run for.

The same tables on SQLite and PostgreSQL (:mod:`tenantry.jobs.store` uses them alike).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
UNFINISHED = (QUEUED, RUNNING)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
# How many times a job may lose its runner (a process killed mid-job) before it fails: a
# job that kills every process that runs it must not take them down forever.
MAX_LOST = 10
# Tenants a claim looks at per turn: those at their cap or with nothing due are skipped.
CLAIM_CANDIDATES = 16

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(63), nullable=False),
    Column("module", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("args", Text, nullable=False),
    Column("key", String(200)),
    Column("state", String(10), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("lost", Integer, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("timeout", Float, nullable=False),
    Column("run_at", Float, nullable=False),
    Column("enqueued", Float, nullable=False),
    Column("started", Float),
    Column("finished", Float),
    Column("lease", String(32)),
    Column("lease_until", Float),
    Column("cancel", Boolean, nullable=False),
    Column("done", Integer),
    Column("total", Integer),
    Column("result", Text),
    Column("error", Text),
    Column("enqueued_by", String(200)),
    Index("jobs_due", "tenant", "state", "run_at"),
    Index("jobs_lease", "state", "lease_until"),
    Index("jobs_finished", "state", "finished"),
    Index(
        "jobs_key",
        "tenant",
        "key",
        unique=True,
        sqlite_where=text("key IS NOT NULL AND state IN ('queued', 'running')"),
        postgresql_where=text("key IS NOT NULL AND state IN ('queued', 'running')"),
    ),
)

job_tenants = Table(
    "job_tenants",
    metadata,
    Column("tenant", String(63), primary_key=True),
    Column("queued", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    Column("max_running", Integer, nullable=False),
    Column("last_claim", Float, nullable=False),
    # A tenant that is disabled, down or not yet migrated: its jobs wait until then.
    Column("paused_until", Float, nullable=False, default=0.0),
)

# One row per (tenant, schedule): the period (its start, in seconds since the epoch) it was
# last queued for. A runner takes a period by moving it forward, so one period is taken once
# however many runners on however many hosts look at it.
job_schedules = Table(
    "job_schedules",
    metadata,
    Column("tenant", String(63), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("period", BigInteger, nullable=False),
)


def sqlite_connect(dbapi_connection, _record) -> None:
    # Transactions are begun by sqlite_begin, as BEGIN IMMEDIATE: a claim reads then
    # writes, and two processes that both read before either writes would take one job.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
