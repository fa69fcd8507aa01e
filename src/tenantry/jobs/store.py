"""Where jobs wait and what runs them takes them from: a fair queue over SQL.

One code for the two SQL stores: a SQLite file in the home (one host; every process of it
takes turns through SQLite's one writer, ``BEGIN IMMEDIATE``) and a schema of the
deployment's PostgreSQL (any number of hosts; rows are claimed with ``FOR UPDATE SKIP
LOCKED``, so two hosts never take one job). Times are the database's clock, never a host's,
so that hosts whose clocks disagree still agree on leases and delays.

What the store guarantees, whoever calls it:

- **Fair turns.** :meth:`JobStore.claim` takes the next job of the tenant that waited
  longest for a turn (``job_tenants.last_claim``), among tenants with a job due and fewer
  than their ``max_running`` running across the whole deployment. One tenant's 10 000
  queued jobs cost the others one index lookup, not a place behind them.
- **Bounded queues.** :meth:`JobStore.enqueue` refuses a tenant's job past its
  ``max_queued`` (:class:`JobQueueFull`).
- **At least once.** A claim is a lease. A runner extends it while the job runs
  (:meth:`JobStore.heartbeat`); a job whose lease ran out (its process killed, its host
  lost) is queued again by :meth:`JobStore.requeue_lost`, without counting as a failure.
  Each claim has its own ``lease`` token, and only its holder can finish the job, so a
  runner that lost its lease cannot overwrite a later attempt's outcome.
- **One unfinished job per key.** Enqueueing a job whose ``(tenant, key)`` names an
  unfinished one returns that job's id (a unique partial index makes it so under races).

The counters of ``job_tenants`` (queued, running) change in the same transaction as the
jobs they count; :meth:`JobStore.recount` rebuilds them from the jobs.
"""

from __future__ import annotations

import json
import secrets
import time

from sqlalchemy import (
    Engine,
    Float,
    case,
    cast,
    delete,
    event,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tenantry.jobs.errors import JobQueueFull
from tenantry.jobs.records import Claimed, NewJob, describe
from tenantry.jobs.tables import (
    CANCELLED,
    CLAIM_CANDIDATES,
    FAILED,
    FINISHED,
    MAX_LOST,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    UNFINISHED,
    job_schedules,
    job_tenants,
    jobs,
    metadata,
    sqlite_begin,
    sqlite_connect,
)


class JobStore:
    """The jobs of every tenant of a home, on ``engine`` (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, schema: str | None = None):
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        if schema is not None:
            self.engine = engine.execution_options(schema_translate_map={None: schema})
        self.schema = schema
        if not self.postgres:
            event.listen(engine, "connect", sqlite_connect)
            event.listen(engine, "begin", sqlite_begin)

    def after_fork(self) -> None:
        """Let go of the connections this process inherited (without closing them: they
        are its parent's)."""
        self.engine.dispose(close=False)

    def create(self) -> None:
        """Make the tables (and the schema) if they are not there."""
        with self.engine.begin() as connection:
            if self.schema is not None:
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            metadata.create_all(connection)

    def now(self):
        """The database's clock, in seconds since the epoch, as an SQL expression."""
        if self.postgres:
            return cast(func.extract("epoch", func.clock_timestamp()), Float)
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)")

    # -- putting jobs in -------------------------------------------------------------------

    def enqueue(self, job: NewJob, max_queued: int, max_running: int) -> tuple[str, bool]:
        """Queue ``job``; returns its id and whether it is new (False: its key named an
        unfinished job, whose id it is).

        :raises JobQueueFull: the tenant has ``max_queued`` jobs waiting.
        """
        try:
            with self.engine.begin() as connection:
                return self._enqueue(connection, job, max_queued, max_running)
        except IntegrityError:
            return self._raced_key(job), False

    def enqueue_scheduled(
        self, job: NewJob, schedule: str, period: int, max_queued: int, max_running: int
    ) -> str | None:
        """Queue ``job`` as the run of ``schedule`` for ``period`` (its start, in seconds
        since the epoch), unless that period or a later one was taken already: returns the
        job's id (or that of the schedule's unfinished job, when ``job.key`` names one), or
        None when another runner took the period first. Taking the period and queueing
        its job are one transaction, so a period is never taken without its job.

        :raises JobQueueFull: the tenant has ``max_queued`` jobs waiting (the period stays
            free: a later look takes it when there is room).
        """
        try:
            with self.engine.begin() as connection:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(job_schedules).values(
                                tenant=job.tenant, name=schedule, period=-1
                            )
                        )
                except IntegrityError:
                    pass  # it was taken before, for some period
                taken = connection.execute(
                    update(job_schedules)
                    .where(
                        job_schedules.c.tenant == job.tenant,
                        job_schedules.c.name == schedule,
                        job_schedules.c.period < period,
                    )
                    .values(period=period)
                ).rowcount
                if not taken:
                    return None
                return self._enqueue(connection, job, max_queued, max_running)[0]
        except IntegrityError:
            return None  # the job's key raced another queueing: that one runs this period

    def _enqueue(self, connection, job: NewJob, max_queued: int, max_running: int):
        # Sorted by when it was made (a tie-break among jobs of one moment), unguessable.
        job_id = f"{time.time_ns():016x}{secrets.token_hex(8)}"
        if job.key is not None:
            found = self._unfinished_with_key(connection, job.tenant, job.key)
            if found is not None:
                return found, False
        counts = self._tenant_row(connection, job.tenant, max_running)
        if counts.queued >= max_queued:
            raise JobQueueFull(
                f"tenant {job.tenant} has {counts.queued} jobs waiting (MAX_QUEUED_JOBS "
                f"is {max_queued})"
            )
        now = self.now()
        connection.execute(
            insert(jobs).values(
                id=job_id,
                tenant=job.tenant,
                module=job.module,
                name=job.name,
                args=job.args,
                key=job.key,
                state=QUEUED,
                attempt=0,
                failures=0,
                lost=0,
                retries=job.retries,
                timeout=job.timeout,
                run_at=now + job.delay,
                enqueued=now,
                cancel=False,
                enqueued_by=job.enqueued_by,
            )
        )
        connection.execute(
            update(job_tenants)
            .where(job_tenants.c.tenant == job.tenant)
            .values(queued=job_tenants.c.queued + 1, max_running=max_running)
        )
        return job_id, True

    def _raced_key(self, job: NewJob) -> str:
        # Another process queued the same key between our look and our insert.
        with self.engine.begin() as connection:
            found = self._unfinished_with_key(connection, job.tenant, job.key)
        if found is None:
            raise RuntimeError(f"job key {job.key!r} of {job.tenant} clashed, then vanished")
        return found

    def clock(self) -> float:
        """The database's time, in seconds since the epoch: every host's runners agree on
        it, whatever their own clocks say."""
        with self.engine.connect() as connection:
            return float(connection.scalar(select(self.now())))

    def _unfinished_with_key(self, connection, tenant: str, key: str | None) -> str | None:
        return connection.scalar(
            select(jobs.c.id).where(
                jobs.c.tenant == tenant, jobs.c.key == key, jobs.c.state.in_(UNFINISHED)
            )
        )

    def _tenant_row(self, connection, tenant: str, max_running: int):
        query = select(job_tenants).where(job_tenants.c.tenant == tenant)
        if self.postgres:
            query = query.with_for_update()
        row = connection.execute(query).first()
        if row is not None:
            return row
        try:
            with connection.begin_nested():
                connection.execute(
                    insert(job_tenants).values(
                        tenant=tenant,
                        queued=0,
                        running=0,
                        max_running=max_running,
                        last_claim=0.0,
                        paused_until=0.0,
                    )
                )
        except IntegrityError:
            pass  # another process made it meanwhile
        return connection.execute(query).first()

    # -- taking jobs out -------------------------------------------------------------------

    def claim(self, lease_seconds: float, skip: frozenset[str] = frozenset()) -> Claimed | None:
        """Take the next due job of the tenant whose turn it is, leased for
        ``lease_seconds``; None when no tenant (but those in ``skip``) has one it may run."""
        with self.engine.begin() as connection:
            now = connection.scalar(select(self.now()))
            # Only tenants with a job due: those whose jobs all wait (a delay, a retry's
            # backoff) must not fill the candidates and starve the tenants behind them.
            has_due = (
                select(jobs.c.id)
                .where(
                    jobs.c.tenant == job_tenants.c.tenant,
                    jobs.c.state == QUEUED,
                    jobs.c.run_at <= now,
                )
                .exists()
            )
            candidates = (
                select(job_tenants.c.tenant)
                .where(
                    job_tenants.c.queued > 0,
                    job_tenants.c.running < job_tenants.c.max_running,
                    job_tenants.c.paused_until <= now,
                    has_due,
                )
                .order_by(job_tenants.c.last_claim, job_tenants.c.tenant)
                .limit(CLAIM_CANDIDATES + len(skip))
            )
            if self.postgres:
                candidates = candidates.with_for_update(skip_locked=True)
            for (tenant,) in connection.execute(candidates).all():
                if tenant in skip:
                    continue
                due = (
                    select(jobs.c.id)
                    .where(jobs.c.tenant == tenant, jobs.c.state == QUEUED, jobs.c.run_at <= now)
                    .order_by(jobs.c.run_at, jobs.c.id)
                    .limit(1)
                )
                if self.postgres:
                    due = due.with_for_update(skip_locked=True)
                job_id = connection.scalar(due)
                if job_id is None:
                    continue
                lease = secrets.token_hex(16)
                row = connection.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        state=RUNNING,
                        attempt=jobs.c.attempt + 1,
                        started=now,
                        lease=lease,
                        lease_until=now + lease_seconds,
                    )
                    .returning(
                        jobs.c.id,
                        jobs.c.tenant,
                        jobs.c.module,
                        jobs.c.name,
                        jobs.c.args,
                        jobs.c.attempt,
                        jobs.c.timeout,
                    )
                ).one()
                connection.execute(
                    update(job_tenants)
                    .where(job_tenants.c.tenant == tenant)
                    .values(
                        queued=job_tenants.c.queued - 1,
                        running=job_tenants.c.running + 1,
                        last_claim=now,
                    )
                )
                return Claimed(*row, lease=lease)
        return None

    def heartbeat(
        self, job_id: str, lease: str, lease_seconds: float, progress: tuple[int, int] | None = None
    ) -> tuple[bool, bool]:
        """Extend a running job's lease (and record its progress); returns whether the lease
        is still this runner's, and whether a cancel was asked."""
        values = {"lease_until": self.now() + lease_seconds}
        if progress is not None:
            values.update(done=progress[0], total=progress[1])
        with self.engine.begin() as connection:
            row = connection.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.lease == lease, jobs.c.state == RUNNING)
                .values(**values)
                .returning(jobs.c.cancel)
            ).first()
        return (row is not None, bool(row and row.cancel))

    def finish(
        self,
        job_id: str,
        lease: str,
        *,
        result: object = None,
        error: str | None = None,
        retry_after: float | None = None,
        cancelled: bool = False,
    ) -> str | None:
        """End a claim: succeeded (``result``), cancelled, or failed (``error``); a failure
        with ``retry_after`` seconds is queued again while the job has retries left. Returns
        the job's new state, or None if the lease was no longer this runner's."""
        with self.engine.begin() as connection:
            row = connection.execute(
                select(jobs.c.tenant, jobs.c.failures, jobs.c.retries)
                .where(jobs.c.id == job_id, jobs.c.lease == lease, jobs.c.state == RUNNING)
                .with_for_update()
            ).first()
            if row is None:
                return None
            now = self.now()
            common = {"lease": None, "lease_until": None}
            if error is None and not cancelled:
                state, values = SUCCEEDED, {"result": json.dumps(result), "finished": now}
            elif cancelled:
                state, values = CANCELLED, {"error": error, "finished": now}
            elif retry_after is not None and row.failures < row.retries:
                state, values = QUEUED, {"error": error, "run_at": now + retry_after}
            else:
                state, values = FAILED, {"error": error, "finished": now}
            failed = error is not None and not cancelled
            connection.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    state=state,
                    failures=jobs.c.failures + (1 if failed else 0),
                    **common,
                    **values,
                )
            )
            connection.execute(
                update(job_tenants)
                .where(job_tenants.c.tenant == row.tenant)
                .values(
                    running=job_tenants.c.running - 1,
                    queued=job_tenants.c.queued + (1 if state == QUEUED else 0),
                )
            )
            return state

    def release(self, job_id: str, lease: str, pause: float | None = None) -> bool:
        """Hand a claimed job back unrun, counting no failure: its process ended under it
        (counted as lost), or its tenant cannot run jobs now (``pause`` seconds: the
        tenant's jobs are not claimed meanwhile). Returns whether the lease was held."""
        with self.engine.begin() as connection:
            tenant = connection.scalar(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.lease == lease, jobs.c.state == RUNNING)
                .values(
                    state=QUEUED,
                    lease=None,
                    lease_until=None,
                    lost=jobs.c.lost + (0 if pause is not None else 1),
                    attempt=jobs.c.attempt - (1 if pause is not None else 0),
                )
                .returning(jobs.c.tenant)
            )
            if tenant is None:
                return False
            values = {"running": job_tenants.c.running - 1, "queued": job_tenants.c.queued + 1}
            if pause is not None:
                values["paused_until"] = self.now() + pause
            connection.execute(
                update(job_tenants).where(job_tenants.c.tenant == tenant).values(**values)
            )
            return True

    def requeue_lost(self) -> int:
        """Queue again every running job whose lease ran out (its runner died); a job lost
        :data:`MAX_LOST` times fails instead. Returns how many were found."""
        with self.engine.begin() as connection:
            now = connection.scalar(select(self.now()))
            lost = select(jobs.c.id, jobs.c.tenant, jobs.c.lost).where(
                jobs.c.state == RUNNING, jobs.c.lease_until < now
            )
            if self.postgres:
                lost = lost.with_for_update(skip_locked=True)
            rows = connection.execute(lost).all()
            for row in rows:
                gone = row.lost + 1 >= MAX_LOST
                connection.execute(
                    update(jobs)
                    .where(jobs.c.id == row.id)
                    .values(
                        state=FAILED if gone else QUEUED,
                        lost=jobs.c.lost + 1,
                        lease=None,
                        lease_until=None,
                        run_at=now,
                        finished=now if gone else None,
                        error=f"its runner was lost {MAX_LOST} times" if gone else None,
                    )
                )
                connection.execute(
                    update(job_tenants)
                    .where(job_tenants.c.tenant == row.tenant)
                    .values(
                        running=job_tenants.c.running - 1,
                        queued=job_tenants.c.queued + (0 if gone else 1),
                    )
                )
            return len(rows)

    # -- asking and telling ----------------------------------------------------------------

    def cancel(self, tenant: str, job_id: str) -> str | None:
        """Cancel a queued job (``"cancelled"``), ask a running one to stop (``"stopping"``),
        or say it had finished (``"finished"``); None if the tenant has no such job."""
        with self.engine.begin() as connection:
            state = connection.scalar(
                select(jobs.c.state)
                .where(jobs.c.id == job_id, jobs.c.tenant == tenant)
                .with_for_update()
            )
            if state is None:
                return None
            if state == QUEUED:
                connection.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(state=CANCELLED, cancel=True, finished=self.now())
                )
                connection.execute(
                    update(job_tenants)
                    .where(job_tenants.c.tenant == tenant)
                    .values(queued=job_tenants.c.queued - 1)
                )
                return "cancelled"
            if state == RUNNING:
                connection.execute(update(jobs).where(jobs.c.id == job_id).values(cancel=True))
                return "stopping"
            return "finished"

    def get(self, tenant: str, job_id: str) -> dict | None:
        """One job of ``tenant`` as the API shows it; None if it has no such job."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.tenant == tenant)
            ).first()
        return None if row is None else describe(row)

    def spec(self, tenant: str, job_id: str) -> dict | None:
        """How a job of ``tenant`` was asked for (``args``, ``retries``, ``timeout``)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(jobs.c.args, jobs.c.retries, jobs.c.timeout).where(
                    jobs.c.id == job_id, jobs.c.tenant == tenant
                )
            ).first()
        return None if row is None else dict(row._mapping)

    def list(
        self, tenant: str, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[dict], int]:
        """A page of ``tenant``'s jobs, newest first, and how many there are in all."""
        where = [jobs.c.tenant == tenant]
        if state is not None:
            where.append(jobs.c.state == state)
        with self.engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(jobs).where(*where))
            rows = connection.execute(
                select(jobs)
                .where(*where)
                .order_by(jobs.c.enqueued.desc(), jobs.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [describe(row) for row in rows], total

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per tenant: (queued, running), as the counters say."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(job_tenants.c.tenant, job_tenants.c.queued, job_tenants.c.running)
            ).all()
        return {row.tenant: (row.queued, row.running) for row in rows}

    # -- housekeeping ----------------------------------------------------------------------

    def purge(self, older_than_days: float, tenant: str | None = None) -> int:
        """Remove finished jobs (of ``tenant``, or of all) that finished more than
        ``older_than_days`` ago."""
        where = [jobs.c.state.in_(FINISHED), jobs.c.finished < self.now() - older_than_days * 86400]
        if tenant is not None:
            where.append(jobs.c.tenant == tenant)
        with self.engine.begin() as connection:
            return connection.execute(delete(jobs).where(*where)).rowcount

    def drop_tenant(self, tenant: str, queued_only: bool = False) -> int:
        """Forget a tenant's jobs: all of them (it was deleted), or only those still queued
        (a restore replaced it). Running ones are cancelled, not removed, when
        ``queued_only``."""
        with self.engine.begin() as connection:
            if queued_only:
                removed = connection.execute(
                    delete(jobs).where(jobs.c.tenant == tenant, jobs.c.state == QUEUED)
                ).rowcount
                connection.execute(
                    update(jobs)
                    .where(jobs.c.tenant == tenant, jobs.c.state == RUNNING)
                    .values(cancel=True)
                )
                connection.execute(
                    update(job_tenants).where(job_tenants.c.tenant == tenant).values(queued=0)
                )
                return removed
            removed = connection.execute(delete(jobs).where(jobs.c.tenant == tenant)).rowcount
            connection.execute(delete(job_tenants).where(job_tenants.c.tenant == tenant))
            connection.execute(delete(job_schedules).where(job_schedules.c.tenant == tenant))
            return removed

    def recount(self) -> dict[str, tuple[int, int]]:
        """Set every tenant's counters from its jobs (they change with the jobs, in one
        transaction; this is the check that they did). Returns the counts."""
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(
                    jobs.c.tenant,
                    func.sum(case((jobs.c.state == QUEUED, 1), else_=0)),
                    func.sum(case((jobs.c.state == RUNNING, 1), else_=0)),
                ).group_by(jobs.c.tenant)
            ).all()
            counted = {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in rows}
            for tenant in connection.scalars(select(job_tenants.c.tenant)).all():
                queued, running = counted.get(tenant, (0, 0))
                connection.execute(
                    update(job_tenants)
                    .where(job_tenants.c.tenant == tenant)
                    .values(queued=queued, running=running)
                )
        return counted


__all__ = [
    "CANCELLED",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "Claimed",
    "JobQueueFull",
    "JobStore",
    "NewJob",
    "describe",
]
