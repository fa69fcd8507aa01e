"""What one tenant holds, read from its database without building its app."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from tenantry.config import TenantConfigError
from tenantry.data import audit
from tenantry.data.db import tenant_database
from tenantry.data.users import User
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.modules.loader import BUILTIN_NAMES, resolve_modules


def tenant_stats(home: TenantHome, slug: str) -> dict:
    """What one tenant holds, read from its database without building its app and
    without writing: ``users``, ``files``, ``bytes`` (its stored files), ``quota_used``
    (every byte its quota counts: files, link snapshots and zips, uploads in progress),
    ``quota``, ``datasets``, ``audit_entries`` and ``last_activity`` (its newest audit
    entry's time). A count is None where the database has no such table yet (never
    migrated to it); ``error`` says why a tenant could not be read.

    The files and datasets figures come from their modules (their ``stats`` hook), loaded
    by name like any module: the platform imports no endpoint module's models.
    """

    stats = {
        "slug": slug,
        "users": None,
        "files": None,
        "bytes": None,
        "quota_used": None,
        "quota": None,
        "datasets": None,
        "audit_entries": None,
        "last_activity": None,
    }
    try:
        stats["quota"] = load_config_class(home, slug).STORAGE_QUOTA
    except TenantConfigError as exc:
        stats["error"] = "; ".join(exc.problems)
    database = tenant_database(home, slug, read_only=True)
    try:
        if not database.exists():
            stats["error"] = "it has no database"
            return stats
        tables = database.table_names()
        entry = audit.AuditEntry
        counted = {
            "users": (User, func.count()),
            "audit_entries": (entry, func.count()),
            "last_activity": (entry, func.max(entry.time)),
        }
        with database.transaction() as session:
            for key, (model, value) in counted.items():
                if model.__tablename__ in tables:
                    stats[key] = session.scalar(select(value).select_from(model))
        for module in resolve_modules(BUILTIN_NAMES):
            if module.stats is not None:
                stats.update(module.stats(database, tables))
    except SQLAlchemyError as exc:
        stats["error"] = f"its database cannot be read: {str(exc).splitlines()[0]}"
    finally:
        database.dispose()
    return stats
