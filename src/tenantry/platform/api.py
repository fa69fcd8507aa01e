"""The platform API, under ``/api/`` of the admin address: JSON in and out, the one error
shape, Bearer tokens of the home's operators (never a tenant's).

Each route calls what the CLI calls (:mod:`tenantry.ops`, :mod:`tenantry.platform.actions`)
inside :func:`~tenantry.data.audit.acting_as`, so each change is in the tenant's audit
log as ``operator:<name>``. A read-only operator gets 403 on every change.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, g
from werkzeug.exceptions import BadRequest, Conflict

from tenantry.data import audit as audit_log
from tenantry.data.db import tenant_database
from tenantry.data.users import ROLES
from tenantry.home.layout import DEFAULT_RETRY_AFTER
from tenantry.jobs.tables import STATES as JOB_STATES
from tenantry.ops.backup_schedule import queue_backup
from tenantry.ops.backups import list_backups
from tenantry.ops.delete import delete_tenant
from tenantry.ops.errors import OperationRefused, TenantError, TenantExists, UnknownTenant
from tenantry.ops.jobs import tenant_jobs
from tenantry.ops.lifecycle import rotate_secret, set_enabled, set_maintenance
from tenantry.platform.actions import (
    TenantUnavailable,
    add_user,
    change_user,
    create_as_operator,
    users_of,
)
from tenantry.platform.operators import SignInRefused
from tenantry.platform.shared import (
    home,
    known,
    operator_required,
    operators,
    overview,
    tenant_detail,
    verdict_of,
)
from tenantry.web.api import json_object, no_content, query_number, query_text, query_time
from tenantry.web.auth import user_errors
from tenantry.web.errors import error_response

api = Blueprint("platform_api", __name__, url_prefix="/api")

MAX_PAGE = 1000
AUDIT_PAGE = 500


# --- signing in --------------------------------------------------------------------------


@api.post("/login")
def login():
    body = json_object()
    _known_fields(body, "name", "password")
    try:
        token = operators().sign_in(body.get("name"), body.get("password"))
    except SignInRefused as exc:
        if exc.retry_after is not None:
            return error_response(429, str(exc), [("Retry-After", str(exc.retry_after))])
        return error_response(401, str(exc))
    return {"access_token": token}


@api.get("/me")
@operator_required()
def me():
    return g.operator.as_dict()


# --- tenants -----------------------------------------------------------------------------


@api.get("/tenants")
@operator_required()
def tenants():
    rows, total = overview().page(
        query_text("q") or "",
        limit=query_number("limit", 100, 1, MAX_PAGE),
        offset=query_number("offset", 0, 0, 2**31),
    )
    return {"data": rows, "total": total}


@api.post("/tenants")
@operator_required(change=True)
def create():
    body = json_object()
    _known_fields(body, "slug", "name", "hosts", "blueprints")
    slug, name = body.get("slug"), body.get("name")
    hosts, blueprints = body.get("hosts", []), body.get("blueprints")
    if not isinstance(slug, str):
        raise BadRequest("slug must be a string.")
    if name is not None and not isinstance(name, str):
        raise BadRequest("name must be a string.")
    if not _strings(hosts) or (blueprints is not None and not _strings(blueprints)):
        raise BadRequest("hosts and blueprints must be arrays of strings.")
    options = {} if blueprints is None else {"blueprints": tuple(blueprints)}
    try:
        create_as_operator(home(), slug, name=name, hosts=tuple(hosts), **options)
    except TenantExists as exc:
        raise Conflict(str(exc)) from None
    except TenantError as exc:
        raise BadRequest(str(exc)) from None
    return overview().row(slug, fresh=True), 201


def _known_fields(body: dict, *fields: str) -> None:
    """:raises BadRequest: ``body`` holds a field not of ``fields``."""
    unknown = set(body) - set(fields)
    if unknown:
        raise BadRequest(f"Unknown fields: {', '.join(sorted(unknown))}.")


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@api.get("/tenants/<slug>")
@operator_required()
def tenant(slug: str):
    return tenant_detail(known(slug))


@api.patch("/tenants/<slug>")
@operator_required(change=True)
def change_tenant(slug: str):
    known(slug)
    body = json_object()
    fields = set(body)
    if not fields & {"enabled", "maintenance"} or fields - {
        "enabled",
        "maintenance",
        "retry_after",
    }:
        raise BadRequest('Send {"enabled": true|false} or {"maintenance": true|false}.')
    for field in ("enabled", "maintenance"):
        if field in body and not isinstance(body[field], bool):
            raise BadRequest(f"{field} must be true or false.")
    if "retry_after" in body and body.get("maintenance") is not True:
        raise BadRequest('retry_after goes with {"maintenance": true}.')
    # maintenance first: its retry_after can be refused, and then nothing has changed
    if "maintenance" in body:
        retry_after = body.get("retry_after", DEFAULT_RETRY_AFTER)
        try:
            set_maintenance(home(), slug, retry_after if body["maintenance"] else None)
        except TenantError as exc:
            raise BadRequest(str(exc)) from None
    if "enabled" in body:
        set_enabled(home(), slug, body["enabled"])
    overview().forget(slug)
    return tenant_detail(slug)


@api.post("/tenants/<slug>/rotate-secret")
@operator_required(change=True)
def rotate(slug: str):
    rotate_secret(home(), known(slug))
    return no_content()


@api.delete("/tenants/<slug>")
@operator_required(change=True)
def delete(slug: str):
    try:
        archive = delete_tenant(home(), known(slug))
    except OperationRefused as exc:  # a backup, restore or clone of it runs
        raise Conflict(str(exc)) from None
    overview().forget(slug)
    return {"deleted": slug, "archive": Path(archive).name if archive else None}


# --- users -------------------------------------------------------------------------------


@api.get("/tenants/<slug>/users")
@operator_required()
def users(slug: str):
    found = users_of(home(), known(slug))
    return {"data": found, "total": len(found)}


@api.post("/tenants/<slug>/users")
@operator_required(change=True)
def new_user(slug: str):
    known(slug)
    body = json_object()
    _known_fields(body, "username", "password", "role")
    username, password, role = body.get("username"), body.get("password"), body.get("role")
    if not all(isinstance(value, str) for value in (username, password, role)):
        raise BadRequest("username, password and role must be strings.")
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}.")
    with user_errors():
        add_user(home(), slug, username, password, role)
    overview().forget(slug)
    return {"username": username, "roles": [role], "active": True}, 201


@api.patch("/tenants/<slug>/users/<username>")
@operator_required(change=True)
def change_a_user(slug: str, username: str):
    known(slug)
    body = json_object()
    changes = {}
    if not body or set(body) - {"password", "active", "roles"}:
        raise BadRequest('Send {"password"}, {"active"} or {"roles"}.')
    if "password" in body:
        if not isinstance(body["password"], str):
            raise BadRequest("password must be a string.")
        changes["password"] = body["password"]
    if "active" in body:
        if not isinstance(body["active"], bool):
            raise BadRequest("active must be true or false.")
        changes["active"] = body["active"]
    if "roles" in body:
        roles = body["roles"]
        if not _strings(roles) or len(roles) != 1 or roles[0] not in ROLES:
            raise BadRequest(f"roles must be one of {[[role] for role in ROLES]}.")
        changes["roles"] = roles
    _change_user(slug, username, **changes)
    found = [row for row in users_of(home(), slug) if row["username"] == username]
    return found[0]


@api.delete("/tenants/<slug>/users/<username>")
@operator_required(change=True)
def delete_a_user(slug: str, username: str):
    _change_user(known(slug), username, delete=True)
    return no_content()


def _change_user(slug: str, username: str, **changes) -> None:
    with user_errors():
        change_user(home(), slug, username, keep_an_admin=True, **changes)
    overview().forget(slug)


# --- backups, audit, jobs ----------------------------------------------------------------


@api.get("/tenants/<slug>/backups")
@operator_required()
def backups(slug: str):
    listed = list_backups(home(), known(slug))
    rows = [{"name": found.name, "bytes": found.size} for found in listed]
    return {"data": rows, "total": len(rows)}


@api.post("/tenants/<slug>/backups")
@operator_required(change=True)
def backup(slug: str):
    return {"job": queue_backup(home(), known(slug), g.operator.name)}, 202


@api.get("/tenants/<slug>/audit")
@operator_required()
def audit(slug: str):
    database = tenant_database(home(), known(slug), read_only=True)
    try:
        if not database.exists() or not audit_log.has_log(database):
            return {"data": [], "total": 0}
        page, total = audit_log.entries(
            database,
            action=query_text("action"),
            actor=query_text("actor"),
            since=query_time("since"),
            limit=query_number("limit", 100, 1, AUDIT_PAGE),
            offset=query_number("offset", 0, 0, 2**31),
        )
    finally:
        database.dispose()
    return {"data": page, "total": total}


@api.get("/tenants/<slug>/audit/verify")
@operator_required()
def verify(slug: str):
    return verdict_of(known(slug))


@api.get("/tenants/<slug>/jobs")
@operator_required()
def jobs(slug: str):
    state = query_text("state")
    if state is not None and state not in JOB_STATES:
        raise BadRequest(f"state must be one of {', '.join(JOB_STATES)}.")
    page, total = tenant_jobs(home(), known(slug)).list(
        state=state,
        limit=query_number("limit", 50, 1, 100),
        offset=query_number("offset", 0, 0, 2**31),
    )
    return {"data": page, "total": total}


def _unknown_tenant(exc: UnknownTenant):
    return error_response(404, str(exc))


def _unavailable(exc: TenantUnavailable):
    return error_response(409, str(exc))


api.register_error_handler(UnknownTenant, _unknown_tenant)
api.register_error_handler(TenantUnavailable, _unavailable)
