"""What a module author writes: ``@job``, ``current_tenant.jobs.enqueue(...)`` and
``current_job()``; :mod:`tenantry.endpoint` re-exports them.

The tenant travels in the job's row, never in its arguments: ``enqueue`` records the tenant
whose request (or job) calls it, and a runner runs the job with exactly that tenant's
``current_tenant``. A job's arguments and result are JSON values, checked when it is
enqueued, so a job that could not be run is refused at once, in the request that asked.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context

from tenantry.data.audit import format_time
from tenantry.jobs.errors import JobQueueFull
from tenantry.jobs.records import NewJob, Store
from tenantry.jobs.spec import DEFAULT_TIMEOUT, JobSpec

MAX_KEY_LENGTH = 200
# How often a running job's ``cancelled`` asks the store (it is read in loops).
CANCEL_CHECK_SECONDS = 1.0


def job(function: Callable | None = None, *, retries: int = 0, timeout: float = DEFAULT_TIMEOUT):
    """Declare a module-level function a job: ``@job`` or ``@job(retries=3, timeout=60)``.

    The function stays callable as it is (a test may call it directly); only a declared
    job can be enqueued.

    :raises TypeError: not a module-level function, or a bad ``retries``/``timeout``.
    """
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise TypeError("retries must be a whole number >= 0")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0:
        raise TypeError("timeout must be a number of seconds > 0")

    def declare(function: Callable) -> Callable:
        if not callable(function) or "<locals>" in getattr(function, "__qualname__", "<locals>"):
            raise TypeError("@job goes on a module-level function: a runner imports it by name")
        function.tenantry_job = JobSpec(retries=retries, timeout=float(timeout))
        return function

    return declare(function) if function is not None else declare


def platform_job(timeout: float = DEFAULT_TIMEOUT):
    """Declare one of the platform's own jobs: called with the home, then its arguments."""

    def declare(function: Callable) -> Callable:
        function.tenantry_job = JobSpec(timeout=float(timeout), platform=True)
        return function

    return declare


def json_arguments(args: tuple) -> str:
    """``args`` as JSON text. :raises TypeError: an argument is not a JSON value (a tuple,
    a set, a date, a float that is not finite, a dict with keys that are not strings)."""
    try:
        text = json.dumps(list(args), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a job's arguments must be JSON values: {exc}") from None
    if json.loads(text) != list(args):  # a tuple comes back a list, a key 1 comes back "1"
        raise TypeError("a job's arguments must be JSON values (a tuple or a non-str key is not)")
    return text


def request_user() -> str | None:
    """Who asks for a job: the user of the request's token; None outside a request."""
    if not has_request_context():
        return None
    identity = g.get("tenantry_identity")
    return identity.user.username if identity is not None else None


@dataclass(frozen=True)
class TenantJobs:
    """``current_tenant.jobs``: enqueue the tenant's jobs."""

    slug: str
    store: Callable[[], Store]
    modules: tuple[str, ...]
    config: dict = field(repr=False)
    actor: Callable[[], str | None] = field(default=request_user, repr=False)

    def enqueue(
        self, function: Callable, *args: Any, key: str | None = None, delay: float | None = None
    ) -> str:
        """Queue ``function(*args)`` as a job of this tenant; returns its id. With ``key``,
        at most one unfinished job of the tenant has it: enqueueing again returns that
        job's id. ``delay``: seconds before it may start.

        :raises TypeError: ``function`` is not a ``@job`` of a module the tenant enabled,
            or an argument is not a JSON value. :raises JobQueueFull: the tenant has
            ``MAX_QUEUED_JOBS`` jobs waiting.
        """
        spec = getattr(function, "tenantry_job", None)
        if not isinstance(spec, JobSpec):
            raise TypeError(f"{getattr(function, '__qualname__', function)!r} is not a @job")
        module = function.__module__
        if not any(module == key_ or module.startswith(key_ + ".") for key_ in self.modules):
            raise TypeError(f"{module} is not an endpoint module this tenant enabled")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH):
            raise TypeError(f"key must be a string of 1 to {MAX_KEY_LENGTH} characters")
        if delay is not None and (
            not isinstance(delay, int | float) or isinstance(delay, bool) or not delay >= 0
        ):
            raise TypeError("delay must be a number of seconds >= 0")
        if delay is not None and not math.isfinite(delay):
            raise TypeError("delay must be finite")
        new = NewJob(
            tenant=self.slug,
            module=module,
            name=function.__qualname__,
            args=json_arguments(args),
            key=key,
            delay=float(delay or 0.0),
            retries=spec.retries,
            timeout=spec.timeout,
            enqueued_by=self.actor(),
        )
        job_id, _new = self.store().enqueue(
            new,
            max_queued=self.config["MAX_QUEUED_JOBS"],
            max_running=self.config["MAX_RUNNING_JOBS"],
        )
        return job_id

    def get(self, job_id: str) -> dict | None:
        """One of the tenant's jobs as the API shows it (times in UTC ISO 8601); None if
        the tenant has no job of that id."""
        found = self.store().get(self.slug, job_id) if JOB_ID.fullmatch(job_id) else None
        return None if found is None else shown(found)

    def list(self, state: str | None = None, limit: int = 50, offset: int = 0):
        """A page of the tenant's jobs, newest first, and how many match in all."""
        page, total = self.store().list(self.slug, state, limit, offset)
        return [shown(found) for found in page], total

    def cancel(self, job_id: str) -> str | None:
        """``"cancelled"`` (it was queued), ``"stopping"`` (it runs: asked to stop),
        ``"finished"``; None if the tenant has no job of that id."""
        return self.store().cancel(self.slug, job_id) if JOB_ID.fullmatch(job_id) else None

    def retry(self, job_id: str) -> str | None:
        """Queue a failed or cancelled job again, as a new job with the same function and
        arguments; returns the new id (None if the tenant has no such finished job)."""
        found = self.store().get(self.slug, job_id) if JOB_ID.fullmatch(job_id) else None
        if found is None or found["state"] not in ("failed", "cancelled"):
            return None
        spec = self.store().spec(self.slug, job_id)
        new = NewJob(
            tenant=self.slug,
            module=found["module"],
            name=found["name"],
            args=spec["args"],
            retries=spec["retries"],
            timeout=spec["timeout"],
            enqueued_by=self.actor(),
        )
        job_id, _new = self.store().enqueue(
            new,
            max_queued=self.config["MAX_QUEUED_JOBS"],
            max_running=self.config["MAX_RUNNING_JOBS"],
        )
        return job_id


JOB_ID = re.compile(r"[0-9a-f]{32}")


def shown(found: dict) -> dict:
    """A job as the API and the CLI show it: its times as the audit log writes them."""
    return {
        **found,
        **{
            key: None
            if found[key] is None
            else format_time(datetime.fromtimestamp(found[key], UTC))
            for key in ("enqueued", "started", "finished")
        },
    }


class JobContext:
    """``current_job()``: the running job's ``id`` and ``attempt``, its ``progress``, and
    whether a cancel was asked (``cancelled``: the job should return soon)."""

    def __init__(self, job_id: str, attempt: int, beat: Callable[[tuple[int, int] | None], bool]):
        self.id = job_id
        self.attempt = attempt
        self._beat = beat
        self._cancelled = False
        self._asked = 0.0

    def progress(self, done: int, total: int) -> None:
        """Record how far the job is (``done`` of ``total``), for ``GET /jobs/<id>``."""
        for value in (done, total):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TypeError("progress takes two whole numbers >= 0")
        self._cancelled = self._beat((done, total)) or self._cancelled
        self._asked = time.monotonic()

    @property
    def saw_cancel(self) -> bool:
        """Whether the job was told of a cancel (it returned because of it), without
        asking the store again."""
        return self._cancelled

    @property
    def cancelled(self) -> bool:
        if not self._cancelled and time.monotonic() - self._asked >= CANCEL_CHECK_SECONDS:
            self._cancelled = self._beat(None)
            self._asked = time.monotonic()
        return self._cancelled


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "tenantry_job", default=None
)


def current_job() -> JobContext:
    """The job being run. :raises RuntimeError: outside a job."""
    context = _current.get()
    if context is None:
        raise RuntimeError("current_job() is only valid inside a running job")
    return context


@contextlib.contextmanager
def running(context: JobContext) -> Iterator[JobContext]:
    """``context`` is the current job inside the block (the runner's)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


__all__ = ["JobContext", "JobQueueFull", "JobSpec", "TenantJobs", "current_job", "job"]
