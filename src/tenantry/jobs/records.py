"""What the job stores take and give: a job as it is enqueued (:class:`NewJob`), a job a
runner took (:class:`Claimed`), a job as it is shown (:func:`describe`), and what every
store does (:class:`Store`), whether it keeps jobs in SQL (:mod:`tenantry.jobs.store`) or
Redis (:mod:`tenantry.jobs.redis_store`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class NewJob:
    """A job as it is enqueued: whose, what, with which arguments (JSON text)."""

    tenant: str
    module: str
    name: str
    args: str
    key: str | None = None
    delay: float = 0.0
    retries: int = 0
    timeout: float = 600.0
    enqueued_by: str | None = None


@dataclass(frozen=True)
class Claimed:
    """A job a runner took: run it, keep its lease fresh, then finish it with ``lease``."""

    id: str
    tenant: str
    module: str
    name: str
    args: str
    attempt: int
    timeout: float
    lease: str


def describe(row) -> dict:
    """A job as the API and the CLI show it (times as floats; the caller formats them)."""
    progress = None if row.total is None else {"done": row.done, "total": row.total}
    return {
        "id": row.id,
        "module": row.module,
        "name": row.name,
        "state": row.state,
        "attempt": row.attempt,
        "progress": progress,
        "result": None if row.result is None else json.loads(row.result),
        "error": row.error,
        "enqueued": row.enqueued,
        "started": row.started,
        "finished": row.finished,
        "enqueued_by": row.enqueued_by,
    }


class Store(Protocol):
    """A home's jobs, wherever they are kept: :class:`tenantry.jobs.store.JobStore` says
    what each method promises; the Redis store keeps the same promises."""

    def after_fork(self) -> None: ...
    def create(self) -> None: ...
    def clock(self) -> float: ...
    def enqueue(self, job: NewJob, max_queued: int, max_running: int) -> tuple[str, bool]: ...
    def enqueue_scheduled(
        self, job: NewJob, schedule: str, period: int, max_queued: int, max_running: int
    ) -> str | None: ...
    def claim(self, lease_seconds: float, skip: frozenset[str] = ...) -> Claimed | None: ...
    def heartbeat(
        self, job_id: str, lease: str, lease_seconds: float, progress=None
    ) -> tuple[bool, bool]: ...
    def finish(self, job_id: str, lease: str, **outcome) -> str | None: ...
    def release(self, job_id: str, lease: str, pause: float | None = None) -> bool: ...
    def requeue_lost(self) -> int: ...
    def cancel(self, tenant: str, job_id: str) -> str | None: ...
    def get(self, tenant: str, job_id: str) -> dict | None: ...
    def spec(self, tenant: str, job_id: str) -> dict | None: ...
    def list(self, tenant: str, state=None, limit: int = 50, offset: int = 0): ...
    def counts(self) -> dict[str, tuple[int, int]]: ...
    def purge(self, older_than_days: float, tenant: str | None = None) -> int: ...
    def drop_tenant(self, tenant: str, queued_only: bool = False) -> int: ...
    def recount(self) -> dict[str, tuple[int, int]]: ...
