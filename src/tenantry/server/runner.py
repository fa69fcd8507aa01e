"""The job runner: ``tenantry worker``, and (soon) the one ``tenantry serve`` starts itself.

It takes the next job from the store (tenants take turns there) and runs it in a process
of its own, forked for that one job:

- **Exactly its tenant.** The child builds the tenant's app, as a worker does for its first
  request, and runs the job inside it: ``current_tenant`` is that tenant's, with its
  database, storage and config. The runner itself never builds a tenant's app, so nothing
  of one job's tenant can be left in the process the next job starts from.
- **A hard time limit.** A job past its ``timeout`` is killed, and fails as if it had
  raised. A job that raises is tried again after 1 s, 2 s, 4 s, ... while it has retries.
- **At least once.** The child keeps its claim's lease fresh; a child that dies under a job
  hands it back at once, and a runner that dies (``kill -9``, a host lost) stops renewing
  the leases of its jobs, which another runner queues again once they run out.
- **Schedules.** Each runner queues its home's due scheduled runs
  (:mod:`tenantry.server.scheduler`); the store lets one runner take each period.
- **Only when the tenant can.** A disabled or down tenant's jobs wait; a tenant that
  cannot be built (its tables not current, its config broken) waits too; a deleted
  tenant's jobs are dropped.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import select
import signal
import threading
import time
from dataclasses import dataclass

from tenantry.config import TenantConfig, TenantConfigError
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.home.settings import tenant_modules
from tenantry.jobs.api import JobContext, running
from tenantry.jobs.place import after_fork, jobs_store
from tenantry.jobs.records import Claimed, Store
from tenantry.jobs.spec import JobSpec
from tenantry.ops.backup_schedule import backup_schedules
from tenantry.server import metrics
from tenantry.server.factory import create_app, prepare_route_kit
from tenantry.server.scheduler import Scheduler

log = logging.getLogger(__name__)

# A lost runner's jobs run again once their lease runs out and a runner looks (every
# REQUEUE_EVERY): within 20 s, well inside the promised minute.
LEASE_SECONDS = 15.0
HEARTBEAT_SECONDS = 5.0
# How often an idle runner asks the store for a job; a busy one takes the next job as
# soon as one of its jobs' processes ends (it waits on their pipes, not on a clock).
POLL_SECONDS = 0.1
REQUEUE_EVERY = 5.0
SCHEDULE_EVERY = 1.0
PURGE_EVERY = 3600.0
# A tenant that cannot run jobs now is asked again after this long.
PAUSE_SECONDS = 5.0
# Exit statuses of a job's process: it finished the job itself, or its tenant could not
# be built (the job goes back, the tenant waits).
DONE, TENANT_UNAVAILABLE = 0, 3


@dataclass
class Running:
    """A job's process, as the runner watches it."""

    claimed: Claimed
    pid: int
    started: float
    deadline: float
    ended: int  # a pipe's read end: readable (at its end) once the process has exited


class JobRunner:
    """Runs the jobs of ``home``, at most ``concurrency`` at once, until :meth:`stop`."""

    def __init__(self, home: TenantHome, concurrency: int = 2, store: Store | None = None):
        self.home = home
        self.concurrency = concurrency
        self.store = store or jobs_store(home.tenants_dir)
        self.running: dict[int, Running] = {}
        self._stopping = threading.Event()
        self.scheduler = Scheduler(home, self.store, platform=backup_schedules)
        self._prepared: dict[str, object] = {}  # slug -> the fingerprint its kit was built for
        self._next_requeue = 0.0
        self._next_purge = 0.0
        self._next_schedule = 0.0

    def stop(self) -> None:
        """Take no new job; the running ones finish (or are handed back by their leases)."""
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set() or self.running:
            self._reap()
            self._housekeeping()
            if self._stopping.is_set() or len(self.running) >= self.concurrency:
                self._wait(POLL_SECONDS)
                continue
            claimed = self.store.claim(LEASE_SECONDS)
            if claimed is None:
                self._wait(POLL_SECONDS)
                continue
            self._start(claimed)

    def _wait(self, seconds: float) -> None:
        """Until one of the jobs' processes ends, or ``seconds`` pass."""
        ended = [job.ended for job in self.running.values()]
        if ended:
            select.select(ended, [], [], seconds)
        else:
            time.sleep(seconds)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_schedule and not self._stopping.is_set():
            self._next_schedule = now + SCHEDULE_EVERY
            try:
                self.scheduler.tick()
            except Exception:  # a store away for a moment: the next tick tries again
                log.exception("queueing the scheduled jobs failed")
        if now >= self._next_requeue:
            self._next_requeue = now + REQUEUE_EVERY
            found = self.store.requeue_lost()
            if found:
                log.warning("%d jobs lost their runner: queued again", found)
            counting = metrics.current()
            if counting is not None:
                counting.set_queued({slug: q for slug, (q, _r) in self.store.counts().items()})
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY
            for slug in self.home.slugs():
                self.store.purge(_keep_days(self.home, slug), tenant=slug)

    def _start(self, claimed: Claimed) -> None:
        slug = claimed.tenant
        if not self.home.exists(slug):
            log.info("dropping the jobs of %s: it was deleted", slug)
            self.store.drop_tenant(slug)
            return
        waits = not self.home.is_enabled(slug) or self.home.maintenance(slug) is not None
        if waits or self.home.writes_held(slug):  # a backup or restore holds its writes
            self.store.release(claimed.id, claimed.lease, pause=PAUSE_SECONDS)
            return
        self._prepare_routes(slug)
        ended, still = os.pipe()
        pid = os.fork()
        if pid == 0:  # the job's own process: it never returns
            os.close(ended)
            code = TENANT_UNAVAILABLE
            try:
                code = run_in_child(self.home, claimed)
            finally:
                os._exit(code)  # `still` closes with the process: the runner wakes
        os.close(still)
        started = time.monotonic()
        self.running[pid] = Running(claimed, pid, started, started + claimed.timeout, ended)

    def _prepare_routes(self, slug: str) -> None:
        """The tenant's modules' routes built here, once per set of modules, so that each
        job's process inherits them instead of compiling them again (they hold nothing
        of a tenant). A tenant whose modules cannot be had is left to its job's process,
        which says why and hands the job back."""
        fingerprint = self.home.fingerprint(slug)
        if self._prepared.get(slug) == fingerprint:
            return  # its config has not changed: its kit is built (its config not run again)
        try:
            prepare_route_kit(tenant_modules(load_config_class(self.home, slug)))
        except Exception:  # the job's own process meets the same problem and reports it
            return
        self._prepared[slug] = fingerprint

    def _reap(self) -> None:
        for pid, job in list(self.running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                if time.monotonic() > job.deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    os.close(job.ended)
                    del self.running[pid]
                    state = self.store.finish(
                        job.claimed.id,
                        job.claimed.lease,
                        error=f"timed out after {job.claimed.timeout:g} s",
                        retry_after=backoff(job.claimed.attempt),
                    )
                    self._ended(job, state)
                continue
            os.close(job.ended)
            del self.running[pid]
            code = os.waitstatus_to_exitcode(status)
            if code == TENANT_UNAVAILABLE:
                self.store.release(job.claimed.id, job.claimed.lease, pause=PAUSE_SECONDS)
            elif code != DONE and self.store.release(job.claimed.id, job.claimed.lease):
                # the process died under the job: at least once, it runs again
                log.warning("the process of job %s ended (%s): queued again", job.claimed.id, code)
                self._ended(job, "lost")
            elif code == DONE:
                self._ended(job, None)

    def _ended(self, job: Running, state: str | None) -> None:
        """Count an attempt's outcome (``state`` None: the job's process recorded it)."""
        counting = metrics.current()
        if counting is None:
            return
        if state is None:
            found = self.store.get(job.claimed.tenant, job.claimed.id)
            state = found["state"] if found is not None else None
        outcome = OUTCOMES.get(state)
        if outcome is not None:
            counting.job(job.claimed.tenant, outcome, time.monotonic() - job.started)


# A job's state after an attempt, as tenantry_jobs_total counts the attempt.
OUTCOMES = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "queued": "retried",
    "lost": "lost",
}


def backoff(attempt: int) -> float:
    """Seconds before a failed job's next try: 1, 2, 4, ... (at most an hour)."""
    return float(min(2 ** max(attempt - 1, 0), 3600))


def _keep_days(home: TenantHome, slug: str) -> int:
    try:
        return load_config_class(home, slug).JOBS_KEEP_DAYS
    except TenantConfigError:
        return TenantConfig.JOBS_KEEP_DAYS


def run_in_child(home: TenantHome, claimed: Claimed) -> int:
    """Run one job in this (forked) process and record its outcome; the exit status."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    after_fork()  # the parent's connections are the parent's
    store = jobs_store(home.tenants_dir)
    try:
        app = create_app(load_config_class(home, claimed.tenant), home)
    except Exception as exc:
        log.warning("job %s waits: %s cannot be built: %s", claimed.id, claimed.tenant, exc)
        return TENANT_UNAVAILABLE
    try:
        # Another runner has the job now: this attempt's outcome does not count.
        run_claimed(app, home, store, claimed, lost=lambda: os._exit(DONE))
    finally:
        app.extensions["tenantry.db"].dispose()
    return DONE


def run_claimed(app, home: TenantHome, store: Store, claimed: Claimed, lost) -> None:
    """Run a claimed job in ``app`` (its tenant's), as the current job, keeping its lease
    fresh, and record its outcome; ``lost()`` is called if the lease was lost meanwhile."""
    lock = threading.Lock()
    stop = threading.Event()

    def beat(progress: tuple[int, int] | None) -> bool:
        with lock:
            held, cancel = store.heartbeat(claimed.id, claimed.lease, LEASE_SECONDS, progress)
        if not held:
            lost()
        return cancel

    def keep_lease() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            beat(None)

    threading.Thread(target=keep_lease, name="tenantry-lease", daemon=True).start()
    context = JobContext(claimed.id, claimed.attempt, beat)
    error = result = None
    with app.app_context(), running(context):
        try:
            function = job_function(claimed)
            arguments = json.loads(claimed.args)
            if function.tenantry_job.platform:
                arguments.insert(0, home)
            result = function(*arguments)
            json.dumps(result, allow_nan=False)  # :raises: the result is no JSON value
        except Exception as exc:  # the job's own failure: recorded, never a traceback
            error = f"{type(exc).__name__}: {exc}"
        finally:
            stop.set()
    # A cancel the job never looked at does not undo what it did: it succeeded.
    cancelled = context.saw_cancel
    with lock:
        store.finish(
            claimed.id,
            claimed.lease,
            result=result,
            error=error,
            retry_after=backoff(claimed.attempt),
            cancelled=cancelled,
        )


def job_function(claimed: Claimed):
    """The ``@job`` function a job names. :raises LookupError: there is none by that name."""
    target = importlib.import_module(claimed.module)
    for part in claimed.name.split("."):
        target = getattr(target, part)
    if not isinstance(getattr(target, "tenantry_job", None), JobSpec):
        raise LookupError(f"{claimed.module}.{claimed.name} is not a @job")
    return target
