import logging

from sqlalchemy.exc import SQLAlchemyError

from tenantry.endpoint import TenantDatabase, TenantStorage

log = logging.getLogger(__name__)


def run_checks(database: TenantDatabase, storage: TenantStorage) -> dict[str, str]:
    """Probe the tenant's database and storage root; each check is "ok" or "failed"."""
    checks = {}
    try:
        database.check()
        checks["database"] = "ok"
    except SQLAlchemyError:
        log.exception("database check failed")
        checks["database"] = "failed"
    checks["storage"] = "ok" if storage.check() else "failed"
    return checks
