"""Scheduled backups: a tenant with ``BACKUP_EVERY`` gets an archive that often, the newest
``BACKUP_KEEP`` kept (:mod:`tenantry.ops.backups` says where).

They run as the tenant's jobs, from a schedule the runner adds for such a tenant
(:func:`backup_schedules`), so they take turns with its other jobs, wait while it is
disabled or down, and are never run twice for one period by two hosts. Each is the archive
``tenants backup`` writes.
"""

from __future__ import annotations

import dataclasses

from flask import current_app

from tenantry.config import TenantConfig
from tenantry.data import audit
from tenantry.home.layout import TenantHome
from tenantry.jobs.api import platform_job
from tenantry.jobs.schedules import Schedule
from tenantry.ops.backup import backup, default_archive_name
from tenantry.ops.backups import backups_folder, drop_backup, list_backups
from tenantry.ops.hold import require_tenant
from tenantry.ops.jobs import tenant_jobs
from tenantry.ops.record import record_action
from tenantry.ops.staging import objects_of
from tenantry.support.atomic import PRIVATE_DIR

BACKUP_SCHEDULE = "backup"  # a schedule name no module's can be (those hold a dot)
# A scheduled backup takes as long as the tenant's data needs; six hours is a stuck one.
BACKUP_TIMEOUT = 6 * 3600.0


@platform_job(timeout=BACKUP_TIMEOUT)
def scheduled_backup(home: TenantHome, operator: str | None = None) -> dict:
    """The job of a tenant's backup schedule (run by the runner, in the tenant's app), or
    of an ``operator``'s request (the platform API; the audit entry is theirs): one
    archive, then the oldest past ``BACKUP_KEEP`` removed."""
    slug = current_app.config["SLUG"]
    if operator is None:
        return take_backup(home, slug, current_app.config["BACKUP_KEEP"])
    with audit.acting_as(audit.Actor(operator)):
        return take_backup(home, slug, current_app.config["BACKUP_KEEP"])


def backup_schedules(config_class: type[TenantConfig]) -> tuple[Schedule, ...]:
    """The tenant's backup schedule, if its ``BACKUP_EVERY`` asks for one."""
    if config_class.BACKUP_EVERY is None:
        return ()
    return (Schedule(BACKUP_SCHEDULE, scheduled_backup, every=config_class.BACKUP_EVERY),)


def take_backup(home: TenantHome, slug: str, keep: int) -> dict:
    """Write one scheduled backup of ``slug`` and keep the newest ``keep``; returns the
    archive's name and the names removed.

    :raises TenantError: another operation on the tenant runs (the job fails; the next
        period tries again). :raises OperationFailed: the archive could not be written.
    """
    require_tenant(home, slug)
    folder = backups_folder(home, slug)
    folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    objects = objects_of(home, slug)
    name = default_archive_name(slug)
    path = backup(home, slug, folder / name)
    if objects is not None:
        # Written on this host's disk, then streamed into the bucket, where every host sees it.
        try:
            objects.put_backup(path, name)
        finally:
            path.unlink(missing_ok=True)
    record_action(home, slug, "tenant.backup", name)
    removed = [stored.name for stored in list_backups(home, slug)[:-keep]]
    for old in removed:
        drop_backup(home, slug, old)
    return {"archive": name, "removed": removed}


def queue_backup(home: TenantHome, slug: str, operator_name: str) -> str:
    """Queue a backup of ``slug`` now, as a job (the one a backup schedule runs), asked
    for by operator ``operator_name`` (the platform API and console); returns its id, or
    the id of the one already queued.

    :raises UnknownTenant: :raises JobQueueFull:
    """
    operator = f"operator:{operator_name}"
    jobs = dataclasses.replace(
        tenant_jobs(home, slug), modules=(scheduled_backup.__module__,), actor=lambda: operator
    )
    return jobs.enqueue(scheduled_backup, operator, key="backup:operator")
