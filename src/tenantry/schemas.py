"""Request bodies, query parameters and responses declared once, as pydantic models.

A module writes one model and uses it twice: :func:`tenantry.endpoint.json_object` and
:func:`tenantry.endpoint.query_object` validate a request with it (a failure is a 400 in the
one error shape, listing each failing field), and :func:`tenantry.openapi.operation` turns
it into the operation's OpenAPI schema. Nested models go to the document's
``components/schemas``, carried by the operation (see :class:`Operation`) until the
tenant's document is built.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest

COMPONENTS = "#/components/schemas/"


def is_model(value: object) -> bool:
    """Whether ``value`` is a pydantic model class."""
    return isinstance(value, type) and issubclass(value, BaseModel)


def validate(model: type[BaseModel], data: object, what: str, context: dict | None = None):
    """``data`` as an instance of ``model``; ``context`` reaches the model's validators
    (``info.context``).

    :raises BadRequest: naming each failing field in ``fields`` (``what`` says where:
        "The request body", "The query").
    """
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        fields = field_errors(exc)
        listed = "; ".join(f"{error['field'] or '(whole)'}: {error['message']}" for error in fields)
        error = BadRequest(f"{what} is not valid: {listed}")
        error.data = {"fields": fields}
        raise error from None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Each failure of ``exc`` as ``{"field": "items.0.name", "message": ..., "type": ...}``:
    no input values (they may be secrets), no links to pydantic's docs."""
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def query_data(model: type[BaseModel], args) -> dict[str, Any]:
    """The query parameters ``model`` names, from werkzeug's ``MultiDict``: every value of
    a parameter whose field is a list, tuple or set; the first one of the others."""
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in args:
            continue
        many = typing.get_origin(field.annotation) in (list, tuple, set, frozenset)
        data[key] = args.getlist(key) if many else args.get(key)
    return data


class Operation(dict):
    """An OpenAPI operation object that also carries the schemas its ``$ref`` names
    (``components``), for the document of every tenant that serves it."""

    components: dict[str, dict]

    def __init__(self, *args, components: dict[str, dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.components = components or {}


def model_schema(model: type[BaseModel], mode: str, components: dict[str, dict]) -> dict:
    """``model``'s JSON schema (``mode``: "validation" for what a request may send,
    "serialization" for what an answer holds), with the schemas of its nested models added
    to ``components`` and referred to there."""
    schema = model.model_json_schema(ref_template=COMPONENTS + "{model}", mode=mode)
    components.update(schema.pop("$defs", {}))
    return schema


def query_parameters(model: type[BaseModel], components: dict[str, dict]) -> list[dict]:
    """One OpenAPI query parameter per field of ``model``."""
    schema = model_schema(model, "validation", components)
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        parameter["schema"] = field_schema
        parameters.append(parameter)
    return parameters


def merge_components(operations, into: dict[str, dict]) -> list[str]:
    """Add the components every operation carries to ``into``; the problems: a name two
    operations give to different schemas."""
    problems = []
    for operation in operations:
        for name, schema in getattr(operation, "components", {}).items():
            if into.setdefault(name, schema) != schema:
                problems.append(f"two different schemas are both named {name!r}")
    return problems
