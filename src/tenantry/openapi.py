"""Each tenant's OpenAPI 3.1 description, generated from its own route table.

Every flask-restful Resource declares its operations in a class attribute ``openapi``
(``{"get": operation(...), ...}``); :func:`build_spec` walks the app's URL map, so the spec
names exactly the routes the tenant has — a tenant without ``files`` lists no file paths —
and a route without a declaration is an error, not a silent gap.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

OPENAPI_VERSION = "3.1.0"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
BEARER = [{"bearer": []}]
_CONVERTER = re.compile(r"<(?:[A-Za-z_]\w*(?:\([^)]*\))?:)?(\w+)>")
_HIDDEN_METHODS = {"OPTIONS"}

ERROR_DESCRIPTIONS = {
    304: "Not modified (If-None-Match matched)",
    400: "Bad request",
    401: "Missing, malformed, expired, revoked or foreign token",
    403: "The token's user lacks a needed role",
    404: "Not found",
    405: "Method not allowed (e.g. a reserved name)",
    409: "Conflict",
    410: "Gone",
    411: "Length required",
    413: "Payload too large",
    416: "Range not satisfiable",
    429: "Too many failed logins; see Retry-After",
    503: "Unavailable",
    507: "Over the tenant's storage quota",
}


def schema_object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required)}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
STRINGS = {"type": "array", "items": STRING}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _error_description(status: int) -> str:
    return ERROR_DESCRIPTIONS.get(status) or HTTP_STATUS_CODES.get(status, f"Status {status}")


def operation(
    summary: str,
    ok: dict[int, dict | None],
    errors: tuple[int, ...] = (),
    body: dict | None = None,
    parameters: tuple[dict, ...] = (),
    public: bool = False,
    binary_body: bool = False,
    optional_body: bool = False,
) -> dict:
    """One operation: ``ok`` maps success statuses to their JSON schema (None: no JSON body;
    a ``{"binary": True}`` marker: raw bytes); ``errors`` lists the documented error statuses.
    Bearer auth (and its 401) is implied unless ``public``."""
    responses: dict[str, Any] = {}
    for status, schema in ok.items():
        if schema is None:
            responses[str(status)] = {"description": "Done"}
        elif schema.get("binary"):
            responses[str(status)] = {
                "description": "The bytes",
                "content": {"application/octet-stream": {"schema": {}}},
            }
        else:
            responses[str(status)] = {"description": "Done", "content": json_content(schema)}
    statuses = set(errors) | ({401} if not public else set()) | {503}
    for status in sorted(statuses):
        description = _error_description(status)
        responses[str(status)] = (
            {"description": description}
            if status == 304
            else {"description": description, "content": json_content(ERROR_REF)}
        )
    spec: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        spec["parameters"] = list(parameters)
    if body is not None:
        spec["requestBody"] = {"required": not optional_body, "content": json_content(body)}
    if binary_body:
        # No body at all is a valid empty upload (HTTP: no length, no chunks = 0 bytes).
        spec["requestBody"] = {
            "required": False,
            "content": {"application/octet-stream": {"schema": {}}},
        }
    spec["security"] = [] if public else BEARER
    return spec


def openapi_path(rule: str) -> str:
    """``/files/<name>/info`` → ``/files/{name}/info``"""
    return _CONVERTER.sub(r"{\1}", rule)


class UndeclaredRoute(LookupError):
    """A registered route has no OpenAPI declaration."""


def build_paths(app: Flask) -> dict[str, dict]:
    """The ``paths`` object for every route of ``app``.

    :raises UndeclaredRoute: a route's resource does not declare one of its methods.
    """
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        declared = getattr(getattr(view, "view_class", None), "openapi", None)
        for method in sorted((rule.methods or set()) - _HIDDEN_METHODS):
            name = method.lower()
            if name == "head" and (declared is None or "head" not in declared):
                continue  # HEAD of a GET route, answered by Flask: not a separate operation
            if declared is None or name not in declared:
                raise UndeclaredRoute(f"{method} {rule.rule} ({rule.endpoint}) is not declared")
            paths.setdefault(openapi_path(rule.rule), {})[name] = declared[name]
    return dict(sorted(paths.items()))


def tenant_paths(app: Flask) -> dict[str, dict]:
    """:func:`build_paths`, built once per app (its routes never change once built)."""
    paths = app.extensions.get("tenantry.openapi_paths")
    if paths is None:
        paths = app.extensions["tenantry.openapi_paths"] = build_paths(app)
    return paths


def build_spec(app: Flask, server_url: str) -> dict:
    """The tenant's whole OpenAPI document, served from ``server_url``."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{app.config['NAME']} API",
            "version": "1",
            "description": f"The API of tenant {app.config['SLUG']} on tenantry.",
        },
        "servers": [{"url": server_url or "/"}],
        "paths": tenant_paths(app),
        "components": {
            "schemas": {
                "Error": schema_object({"error": STRING, "message": STRING}, ("error", "message"))
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
