"""The scheduler: each tenant's schedules queued as their periods come due.

Every runner has one (a home's runners on every host), and each looks at every tenant;
the job store lets one of them take each (tenant, schedule, period), in the transaction
that queues its job (:meth:`tenantry.jobs.store.Store.enqueue_scheduled`), so a period
runs once however many runners look. A schedule's job has the key ``schedule:<name>``:
while one run is still queued or running, the next period adds none (runs do not pile up
behind a slow one).

What a tenant's schedules are is read from its config and modules, again whenever its
config, secrets or enabled state change, at most every :data:`REFRESH_SECONDS`: a new
tenant's schedules start within that of its creation. A disabled or down tenant gets no
runs queued (its periods pass); one whose config is broken neither.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenantry.config import TenantConfig, TenantConfigError
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.home.settings import schedules_of, tenant_modules
from tenantry.jobs.errors import JobQueueFull
from tenantry.jobs.records import NewJob, Store
from tenantry.jobs.schedules import Schedule

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
SCHEDULE_KEY_PREFIX = "schedule:"


@dataclass(frozen=True)
class TenantPlan:
    """One tenant's schedules and job limits, as of its config's ``fingerprint``."""

    fingerprint: object
    schedules: tuple[Schedule, ...]
    max_queued: int
    max_running: int


class Scheduler:
    """Queues the due runs of ``home``'s tenants' schedules into ``store``: their modules'
    and those ``platform`` adds for a tenant's config (its scheduled backups)."""

    def __init__(
        self,
        home: TenantHome,
        store: Store,
        platform: Callable[[type[TenantConfig]], tuple[Schedule, ...]] = lambda config: (),
    ):
        self.home = home
        self.store = store
        self.platform = platform
        self._plans: dict[str, TenantPlan] = {}
        # (tenant, schedule) -> the last period this runner saw taken, by it or another.
        self._seen: dict[tuple[str, str], int] = {}
        self._next_refresh = 0.0
        self._complained: set[tuple[str, object]] = set()

    def tick(self) -> int:
        """Queue every run that came due since the last tick; returns how many."""
        if time.monotonic() >= self._next_refresh:
            self._next_refresh = time.monotonic() + REFRESH_SECONDS
            self._refresh()
        if not self._plans:
            return 0
        now = self.store.clock()
        queued = 0
        for slug, plan in self._plans.items():
            for schedule in plan.schedules:
                period = schedule.due(slug, now)
                if self._seen.get((slug, schedule.name)) == period:
                    continue
                try:
                    job_id = self.store.enqueue_scheduled(
                        scheduled_job(slug, schedule),
                        schedule.name,
                        period,
                        max_queued=plan.max_queued,
                        max_running=plan.max_running,
                    )
                except JobQueueFull:
                    continue  # its queue is full: tried again next tick, while the period lasts
                self._seen[(slug, schedule.name)] = period
                queued += job_id is not None
        return queued

    def _refresh(self) -> None:
        plans = {}
        for slug in self.home.slugs():
            if not self.home.is_enabled(slug) or self.home.maintenance(slug) is not None:
                continue
            fingerprint = self.home.fingerprint(slug)
            plan = self._plans.get(slug)
            if plan is None or plan.fingerprint != fingerprint:
                plan = self._plan(slug, fingerprint)
            if plan is not None:
                plans[slug] = plan
        self._plans = plans
        self._seen = {key: period for key, period in self._seen.items() if key[0] in plans}

    def _plan(self, slug: str, fingerprint: object) -> TenantPlan | None:
        try:
            config_class = load_config_class(self.home, slug)
            schedules, problems = schedules_of(config_class, tenant_modules(config_class))
        except TenantConfigError as exc:
            problems = exc.problems
        if problems:
            if (slug, fingerprint) not in self._complained:
                self._complained.add((slug, fingerprint))
                log.warning("no schedules run for %s: %s", slug, "; ".join(problems))
            return None
        return TenantPlan(
            fingerprint,
            (*schedules, *self.platform(config_class)),
            config_class.MAX_QUEUED_JOBS,
            config_class.MAX_RUNNING_JOBS,
        )


def scheduled_job(slug: str, schedule: Schedule) -> NewJob:
    """The job of one run of ``schedule`` for ``slug``."""
    spec = schedule.job.tenantry_job
    return NewJob(
        tenant=slug,
        module=schedule.job.__module__,
        name=schedule.job.__qualname__,
        args="[]",
        key=SCHEDULE_KEY_PREFIX + schedule.name,
        retries=spec.retries,
        timeout=spec.timeout,
    )
