"""A tenant's jobs for the operator's commands (``tenantry jobs ...``): the same handle a
request gets, without building the tenant's app, and each change in its audit log."""

from __future__ import annotations

import logging

from tenantry.config import TenantConfig, TenantConfigError
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.jobs.api import TenantJobs
from tenantry.jobs.place import jobs_store
from tenantry.ops.errors import OperationFailed, TenantError
from tenantry.ops.hold import require_tenant
from tenantry.ops.record import record_action

log = logging.getLogger(__name__)


def tenant_jobs(home: TenantHome, slug: str) -> TenantJobs:
    """The jobs of ``slug``. :raises UnknownTenant: :raises JobsPlaceError: the home
    keeps its jobs elsewhere than TENANTRY_JOBS_URL says."""
    require_tenant(home, slug)
    jobs_store(home.tenants_dir)  # the place checked now, not at the first question
    try:
        config_class = load_config_class(home, slug)
    except TenantConfigError:
        config_class = TenantConfig  # its jobs can still be listed and cancelled
    limits = {key: getattr(config_class, key) for key in ("MAX_QUEUED_JOBS", "MAX_RUNNING_JOBS")}
    return TenantJobs(
        slug=slug,
        store=lambda: jobs_store(home.tenants_dir),
        modules=(),
        config=limits,
        actor=lambda: None,
    )


def cancel_job(home: TenantHome, slug: str, job_id: str) -> str:
    """Cancel one job (``"cancelled"``) or ask it to stop (``"stopping"``).

    :raises TenantError: no such job. :raises OperationFailed: it had finished.
    """
    outcome = tenant_jobs(home, slug).cancel(job_id)
    if outcome is None:
        raise TenantError(f"{slug} has no job {job_id}")
    if outcome == "finished":
        raise OperationFailed(f"job {job_id} had already finished")
    record_action(home, slug, "job.cancel", job_id)
    return outcome


def retry_job(home: TenantHome, slug: str, job_id: str) -> str:
    """Run a failed (or cancelled) job again, as a new job; returns the new job's id.

    :raises TenantError: no such job, or it did not fail.
    """
    new_id = tenant_jobs(home, slug).retry(job_id)
    if new_id is None:
        raise TenantError(f"{slug} has no failed or cancelled job {job_id}")
    record_action(home, slug, "job.retry", job_id)
    return new_id


def drop_jobs(home: TenantHome, slug: str, queued_only: bool = False) -> int:
    """Forget the jobs of a tenant that was deleted (all of them), or of one a restore
    replaced (those still queued: they were asked for by the tenant that is gone; running
    ones are asked to stop). Returns how many went. A store that cannot be reached is
    logged, not raised: the tenant's change is done, and a runner drops a deleted
    tenant's jobs when it meets them."""
    try:
        return jobs_store(home.tenants_dir).drop_tenant(slug, queued_only=queued_only)
    except Exception:
        log.exception("the jobs of %s could not be dropped", slug)
        return 0
