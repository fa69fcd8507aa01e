"""``GET /api/openapi.json``: the platform API's own OpenAPI 3.1 document (public, like a
tenant's: it says what the routes are, never what a home holds)."""

from __future__ import annotations

from flask import Blueprint

import tenantry

openapi = Blueprint("platform_openapi", __name__, url_prefix="/api")

STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
INTEGER = {"type": "integer"}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
STRINGS = {"type": "array", "items": STRING}
ERROR = {
    "type": "object",
    "properties": {"error": STRING, "message": STRING},
    "required": ["error", "message"],
}
TENANT = {
    "type": "object",
    "properties": {
        "slug": STRING,
        "name": {"type": ["string", "null"]},
        "enabled": BOOLEAN,
        "maintenance": BOOLEAN,
        "blueprints": STRINGS,
        "hosts": STRINGS,
        "users": NULLABLE_INTEGER,
        "bytes": NULLABLE_INTEGER,
        "quota": NULLABLE_INTEGER,
        "last_activity": {"type": ["string", "null"], "format": "date-time"},
    },
    "required": ["slug", "enabled", "maintenance", "hosts", "blueprints"],
}
USER = {
    "type": "object",
    "properties": {"username": STRING, "roles": STRINGS, "active": BOOLEAN},
    "required": ["username", "roles", "active"],
}
OPERATOR = {
    "type": "object",
    "properties": {
        "name": STRING,
        "read_only": BOOLEAN,
        "active": BOOLEAN,
        "created": {"type": "string", "format": "date-time"},
    },
    "required": ["name", "read_only", "active", "created"],
}
PAGE = {"limit": INTEGER, "offset": INTEGER}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _page_of(item: dict) -> dict:
    return {
        "type": "object",
        "properties": {"data": {"type": "array", "items": item}, "total": INTEGER},
        "required": ["data"],
    }


def _operation(summary: str, answers: dict, body: dict | None = None, query=(), change=False):
    operation = {
        "summary": summary,
        "responses": {
            str(status): {"description": description, **({} if schema is None else _json(schema))}
            for status, (description, schema) in answers.items()
        },
        "security": [{"operator": []}],
    }
    for status in (401, 403, 404, 400) if change else (401, 404):
        operation["responses"].setdefault(str(status), {"description": "refused", **_json(ERROR)})
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    if query:
        operation["parameters"] = [
            {"name": name, "in": "query", "schema": schema} for name, schema in query
        ]
    return operation


def _body(properties: dict, required=()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required)}


SIGN_IN = {
    "type": "object",
    "properties": {"name": STRING, "password": STRING},
    "required": ["name", "password"],
}
SLUG = {"name": "slug", "in": "path", "required": True, "schema": STRING}
USERNAME = {"name": "username", "in": "path", "required": True, "schema": STRING}


def document() -> dict:
    tenant_change = _body({"enabled": BOOLEAN, "maintenance": BOOLEAN, "retry_after": INTEGER})
    user_change = _body({"password": STRING, "active": BOOLEAN, "roles": STRINGS})
    paths = {
        "/api/login": {
            "post": {
                "summary": "An operator's token (Bearer, 15 minutes)",
                "requestBody": _json(SIGN_IN),
                "responses": {
                    "200": {"description": "signed in", **_json(_body({"access_token": STRING}))},
                    "401": {"description": "wrong name or password", **_json(ERROR)},
                    "429": {"description": "locked out (Retry-After)", **_json(ERROR)},
                },
            }
        },
        "/api/me": {
            "get": _operation("The operator the token speaks for", {200: ("you", OPERATOR)}),
        },
        "/api/tenants": {
            "get": _operation(
                "Tenants by slug, with their figures; q searches slug, name and hosts",
                {200: ("a page", _page_of(TENANT))},
                query=(("q", STRING), *PAGE.items()),
            ),
            "post": _operation(
                "Create a tenant (as `tenants create`)",
                {201: ("created", TENANT), 409: ("exists", ERROR)},
                _body(
                    {"slug": STRING, "name": STRING, "hosts": STRINGS, "blueprints": STRINGS},
                    ("slug",),
                ),
                change=True,
            ),
        },
        "/api/tenants/{slug}": {
            "parameters": [SLUG],
            "get": _operation("One tenant", {200: ("the tenant", TENANT)}),
            "patch": _operation(
                "Enable, disable, or take down for maintenance",
                {200: ("changed", TENANT)},
                tenant_change,
                change=True,
            ),
            "delete": _operation(
                "Delete, after an archive in the trash",
                {200: ("deleted", _body({"deleted": STRING, "archive": STRING}))},
                change=True,
            ),
        },
        "/api/tenants/{slug}/rotate-secret": {
            "parameters": [SLUG],
            "post": _operation("A new secret key", {204: ("rotated", None)}, change=True),
        },
        "/api/tenants/{slug}/users": {
            "parameters": [SLUG],
            "get": _operation("The tenant's users", {200: ("users", _page_of(USER))}),
            "post": _operation(
                "Add a user",
                {201: ("added", USER), 409: ("exists", ERROR)},
                _body(
                    {"username": STRING, "password": STRING, "role": {"enum": ["admin", "user"]}},
                    ("username", "password", "role"),
                ),
                change=True,
            ),
        },
        "/api/tenants/{slug}/users/{username}": {
            "parameters": [SLUG, USERNAME],
            "patch": _operation(
                "Change a user (the last active admin stays: 409)",
                {200: ("changed", USER), 409: ("last admin", ERROR)},
                user_change,
                change=True,
            ),
            "delete": _operation(
                "Delete a user", {204: ("deleted", None), 409: ("last admin", ERROR)}, change=True
            ),
        },
        "/api/tenants/{slug}/backups": {
            "parameters": [SLUG],
            "get": _operation("Stored backups", {200: ("backups", _page_of(_body({})))}),
            "post": _operation(
                "Back up now, as a job", {202: ("queued", _body({"job": STRING}))}, change=True
            ),
        },
        "/api/tenants/{slug}/audit": {
            "parameters": [SLUG],
            "get": _operation(
                "Audit entries, newest first",
                {200: ("entries", _page_of(_body({})))},
                query=(("action", STRING), ("actor", STRING), ("since", STRING), *PAGE.items()),
            ),
        },
        "/api/tenants/{slug}/audit/verify": {
            "parameters": [SLUG],
            "get": _operation(
                "Check the audit log's hash chain",
                {200: ("verdict", _body({"ok": BOOLEAN, "entries": INTEGER, "head": STRING}))},
            ),
        },
        "/api/tenants/{slug}/jobs": {
            "parameters": [SLUG],
            "get": _operation(
                "The tenant's jobs, newest first",
                {200: ("jobs", _page_of(_body({})))},
                query=(("state", STRING), *PAGE.items()),
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "tenantry platform API", "version": tenantry.__version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"operator": {"type": "http", "scheme": "bearer"}},
        },
    }


@openapi.get("/openapi.json")
def spec():
    return document()
