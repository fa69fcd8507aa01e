"""The checks ``/status`` runs: the tenant's database and storage answer."""

import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from tenantry.endpoint import Tenant

log = logging.getLogger(__name__)

# A database probe is reused this long per worker: a failure still shows within it.
PROBE_SECONDS = 1.0


def run_checks(tenant: Tenant) -> dict[str, str]:
    """Probe the tenant's database and storage root; each check is "ok" or "failed".

    The database answer is kept for up to :data:`PROBE_SECONDS` in the worker (a busy
    health check would otherwise query it on every request); the storage root costs two
    system calls and is looked at every time.
    """
    now = time.monotonic()
    kept = tenant.cache.get("status.database")
    if kept is None or kept[0] <= now:
        kept = (now + PROBE_SECONDS, _database_check(tenant))
        tenant.cache["status.database"] = kept
    return {"database": kept[1], "storage": "ok" if tenant.storage.check() else "failed"}


def _database_check(tenant: Tenant) -> str:
    try:
        tenant.database.check()
    except SQLAlchemyError:
        log.exception("database check failed")
        return "failed"
    return "ok"
