"""What the platform API and the console share: the home, its operators and tenants'
overview (held by the admin app), and the reads both show."""

from __future__ import annotations

import functools

from flask import current_app, g, request
from werkzeug.exceptions import Forbidden, NotFound, Unauthorized

from tenantry.data import audit as audit_log
from tenantry.data.db import tenant_database
from tenantry.home.layout import TenantHome
from tenantry.platform.operators import Operator


def home() -> TenantHome:
    return current_app.extensions["tenantry.home"]


def overview():
    return current_app.extensions["tenantry.overview"]


def operators():
    return current_app.extensions["tenantry.operators"]


def signed_in_operator():
    """The operator of the request's Bearer token, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return operators().operator_of(token.strip())


def operator_required(change: bool = False):
    """The route needs an operator's token (401 without); a ``change`` needs one that is
    not read-only (403), and runs as that operator for the audit log."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            operator = g.get("operator") or signed_in_operator()
            if operator is None:
                raise Unauthorized("An operator's token is required (POST /api/login).")
            if change and operator.read_only:
                raise Forbidden(f"Operator {operator.name} is read-only.")
            g.operator = operator
            with acting_operator(operator):
                return view(*args, **kwargs)

        return wrapped

    return decorate


def acting_operator(operator: Operator):
    """The block's audit entries are ``operator``'s, from the request's client."""
    actor = audit_log.Actor(
        f"operator:{operator.name}",
        request.environ.get("tenantry.request_id"),
        request.remote_addr,
    )
    return audit_log.acting_as(actor)


def known(slug: str) -> str:
    """``slug`` if it is a tenant of the home. :raises NotFound:"""
    if not home().exists(slug):
        raise NotFound(f"No tenant {slug!r}.")
    return slug


def tenant_detail(slug: str) -> dict:
    row = overview().row(slug, fresh=True)
    figures = overview().figures(slug)
    return {
        **row,
        "files": figures.get("files"),
        "quota_used": figures.get("quota_used"),
        "datasets": figures.get("datasets"),
        "audit_entries": figures.get("audit_entries"),
        "maintenance_retry_after": home().maintenance(slug),
    }


def verdict_of(slug: str) -> dict:
    database = tenant_database(home(), slug, read_only=True)
    try:
        if not database.exists() or not audit_log.has_log(database):
            return {"ok": True, "entries": 0, "head": audit_log.GENESIS}
        verdict = audit_log.verify(database)
    finally:
        database.dispose()
    if verdict.holds:
        return {"ok": True, "entries": verdict.entries, "head": verdict.head}
    return {"ok": False, "broken_at": verdict.broken, "reason": verdict.reason}
