"""An operator's action, once done, in the tenant's audit log."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tenantry.data import audit
from tenantry.data.db import tenant_database
from tenantry.home.layout import TenantHome

log = logging.getLogger(__name__)


def record_action(home: TenantHome, slug: str, action: str, target: str | None = None) -> None:
    """Record an operator's action, once done, in the tenant's audit log (``target``: the
    slug by default): the log never holds an action that did not happen. The work stands
    if the entry cannot be written — an operator must be able to act when the log cannot
    take it (its database down, lost, not answering, or not yet migrated: `down`,
    `disable` and `rotate-secret` are for such times) —; a warning then says the action is
    not in the log. Nothing is created or migrated here, and the entry waits for the
    database at most about :data:`AUDIT_WAIT` seconds.
    """
    database = tenant_database(home, slug)
    try:
        reason = _entry_refused(database, action, target or slug)
    finally:
        database.dispose()
    if reason is not None:
        log.warning("%s of %s is not in its audit log: %s", action, slug, reason)


AUDIT_WAIT = 10


def _entry_refused(database, action: str, target: str) -> str | None:
    """Record an operator's action; None, or why it could not be."""
    try:
        if not audit.has_log(database):
            return "its database has no audit log yet (`tenantry migrate` adds it)"
        with database.transaction() as session:
            if database.is_postgres:
                for setting in ("lock_timeout", "statement_timeout"):
                    session.execute(text(f"SET LOCAL {setting} = '{AUDIT_WAIT}s'"))
            audit.record(session, action, target)
    except (SQLAlchemyError, audit.LogMissing) as exc:
        return str(exc).splitlines()[0]
    return None
