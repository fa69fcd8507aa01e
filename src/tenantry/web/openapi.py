"""Each tenant's OpenAPI 3.1 description, generated from its own route table.

Every flask-restful Resource declares its operations in a class attribute ``openapi``
(``{"get": operation(...), ...}``); :func:`build_spec` walks the app's URL map, so the spec
names exactly the routes the tenant has — a tenant without ``files`` lists no file paths.
A declaration is welcome, never required: a route nobody declared (a plain Flask view, a
resource without ``openapi``) is listed with its path, methods and path parameters, and
``tenants check`` names it (a refusal where the tenant sets ``OPENAPI_STRICT``).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic import BaseModel
from werkzeug.http import HTTP_STATUS_CODES

from tenantry.web.schemas import (
    Operation,
    is_model,
    merge_components,
    model_schema,
    query_parameters,
)

OPENAPI_VERSION = "3.1.0"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
BEARER = [{"bearer": []}]
# A rule's variable part: its converter (None for the default) and its name.
RULE_VARIABLE = re.compile(r"<(?:([A-Za-z_]\w*)(?:\([^)]*\))?:)?(\w+)>")
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
    ok: dict[int, Any],
    errors: tuple[int, ...] = (),
    body: dict | type[BaseModel] | Any = None,
    parameters: tuple[dict, ...] = (),
    public: bool = False,
    binary_body: bool = False,
    optional_body: bool = False,
    query: type[BaseModel] | None = None,
) -> Operation:
    """One operation: ``ok`` maps success statuses to their JSON schema (a dict), pydantic
    model or type (``list[Item]``) (None: no JSON body; a ``{"binary": True}`` marker: raw
    bytes); ``errors`` lists the documented error statuses; ``body`` is the JSON body's
    schema, model or type; ``query`` a model of the query parameters. A model documents a
    400 as well (its validation fails so). Bearer auth (and its 401) is implied unless
    ``public``.

    :raises TypeError: a model or type no JSON schema can describe (at the module's
        import, naming the operation).
    """
    components: dict[str, dict] = {}
    responses: dict[str, Any] = {}
    if query is not None and not is_model(query):
        raise TypeError(f"operation {summary!r}: query must be a pydantic model, not {query!r}")
    for status, schema in ok.items():
        if schema is None:
            responses[str(status)] = {"description": "Done"}
        elif not isinstance(schema, dict):  # a model, or a type such as list[Model]
            content = json_content(_schema_of(schema, "serialization", components, summary))
            responses[str(status)] = {"description": "Done", "content": content}
        elif schema.get("binary"):
            responses[str(status)] = {
                "description": "The bytes",
                "content": {"application/octet-stream": {"schema": {}}},
            }
        else:
            responses[str(status)] = {"description": "Done", "content": json_content(schema)}
    typed_body = body is not None and not isinstance(body, dict)
    validated = {400} if typed_body or query is not None else set()
    statuses = set(errors) | validated | ({401} if not public else set()) | {503}
    for status in sorted(statuses):
        description = _error_description(status)
        responses[str(status)] = (
            {"description": description}
            if status == 304
            else {"description": description, "content": json_content(ERROR_REF)}
        )
    spec: dict[str, Any] = {"summary": summary, "responses": responses}
    parameters = list(parameters)
    if query is not None:
        parameters += query_parameters(query, components)
    if parameters:
        spec["parameters"] = parameters
    if typed_body:
        body = _schema_of(body, "validation", components, summary)
    if body is not None:
        spec["requestBody"] = {"required": not optional_body, "content": json_content(body)}
    if binary_body:
        # No body at all is a valid empty upload (HTTP: no length, no chunks = 0 bytes).
        spec["requestBody"] = {
            "required": False,
            "content": {"application/octet-stream": {"schema": {}}},
        }
    spec["security"] = [] if public else BEARER
    return Operation(spec, components=components)


def _schema_of(model, mode: str, components: dict, summary: str) -> dict:
    """:func:`model_schema`, its TypeError naming the operation."""
    try:
        return model_schema(model, mode, components)
    except TypeError as exc:
        raise TypeError(f"operation {summary!r}: {exc}") from None


def openapi_path(rule: str) -> str:
    """``/files/<name>/info`` → ``/files/{name}/info``"""
    return RULE_VARIABLE.sub(r"{\2}", rule)


def build_paths(app: Flask) -> dict[str, dict]:
    """The ``paths`` object for every route of ``app``: each declared operation as its
    resource declares it, and every other one (a plain Flask view, a resource without
    ``openapi``, a method its ``openapi`` leaves out) with its path parameters and an
    open response, so that a client sees that it exists."""
    paths: dict[str, dict] = {}
    for rule, method, declared in _operations(app):
        if declared is None:
            operation = undeclared_operation(rule, method)
        else:
            operation = _with_path_parameters(declared, rule)
        paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = operation
    return dict(sorted(paths.items()))


def _with_path_parameters(operation: dict, rule) -> dict:
    """``operation`` with a parameter for each variable part of ``rule`` it does not
    declare (a resource served at ``/items`` and ``/items/<int:id>`` declares one
    ``openapi`` for both), so the document stays valid."""
    declared = {p.get("name") for p in operation.get("parameters", ()) if p.get("in") == "path"}
    missing = [p for p in path_parameters(rule) if p["name"] not in declared]
    if not missing:
        return operation
    copy = type(operation)(operation)
    if isinstance(operation, Operation):
        copy.components = operation.components
    copy["parameters"] = [*operation.get("parameters", ()), *missing]
    return copy


def undeclared_routes(app: Flask) -> list[str]:
    """``"GET /plain (notes.plain)"`` for each operation of ``app`` that no resource
    declares, in the URL map's order."""
    return [
        f"{method} {rule.rule} ({rule.endpoint})"
        for rule, method, declared in _operations(app)
        if declared is None
    ]


def _operations(app: Flask):
    """Each (rule, method, its declaration or None) of ``app``: HEAD only where declared
    (Flask answers HEAD on a GET route itself), OPTIONS never."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        # A resource's class attribute, or a plain view function's own attribute.
        declared = getattr(getattr(view, "view_class", view), "openapi", None)
        if not isinstance(declared, dict):
            declared = {}
        for method in sorted((rule.methods or set()) - _HIDDEN_METHODS):
            name = method.lower()
            if name == "head" and name not in declared:
                continue
            yield rule, method, declared.get(name)


# What a path variable's converter says of its values, for an undeclared route.
_CONVERTER_SCHEMAS = {
    "int": {**INTEGER, "minimum": 0},
    "float": {"type": "number"},
    "uuid": {**STRING, "format": "uuid"},
}


def path_parameters(rule) -> list[dict]:
    """A parameter for each variable part of ``rule``, typed as its converter says."""
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(_CONVERTER_SCHEMAS.get(converter, STRING)),
        }
        for converter, name in RULE_VARIABLE.findall(rule.rule)
    ]


def undeclared_operation(rule, method: str) -> dict:
    """What the spec can say of a route nobody declared: that it exists, its path
    parameters, and that any answer may come back."""
    parameters = path_parameters(rule)
    spec: dict[str, Any] = {
        "summary": f"{method} {rule.rule} (not declared by its module)",
        "responses": {"default": {"description": "Not declared by its module"}},
    }
    if parameters:
        spec["parameters"] = parameters
    return spec


def tenant_paths(app: Flask) -> tuple[dict[str, dict], dict[str, dict]]:
    """:func:`build_paths` and the schemas its operations refer to, built once per app
    (its routes never change once built)."""
    built = app.extensions.get("tenantry.openapi_paths")
    if built is None:
        paths = build_paths(app)
        built = app.extensions["tenantry.openapi_paths"] = (paths, document_schemas(paths)[0])
    return built


def document_schemas(paths: dict[str, dict]) -> tuple[dict[str, dict], list[str]]:
    """The ``components/schemas`` of a document with these ``paths``: the platform's
    ``Error`` and what their operations carry; and the problems (two schemas, one name)."""
    schemas = {"Error": ERROR_SCHEMA}
    operations = (operation for by_method in paths.values() for operation in by_method.values())
    problems = merge_components(operations, schemas)
    return dict(sorted(schemas.items())), problems


ERROR_SCHEMA = schema_object({"error": STRING, "message": STRING}, ("error", "message"))


def build_spec(app: Flask, server_url: str) -> dict:
    """The tenant's whole OpenAPI document, served from ``server_url``."""
    paths, schemas = tenant_paths(app)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{app.config['NAME']} API",
            "version": "1",
            "description": f"The API of tenant {app.config['SLUG']} on tenantry.",
        },
        "servers": [{"url": server_url or "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
