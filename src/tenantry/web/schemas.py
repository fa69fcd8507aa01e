"""Request bodies, query parameters and responses declared once, as pydantic models.

A module writes one model and uses it twice: :func:`tenantry.endpoint.json_object` and
:func:`tenantry.endpoint.query_object` validate a request with it (a failure is a 400 in the
one error shape, listing each failing field), and :func:`tenantry.web.openapi.operation` turns
it into the operation's OpenAPI schema. Nested models go to the document's
``components/schemas``, carried by the operation (see :class:`Operation`) until the
tenant's document is built.
"""

from __future__ import annotations

import functools
from typing import Any

from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel, PydanticUserError, TypeAdapter, ValidationError
from werkzeug.exceptions import BadRequest

COMPONENTS = "#/components/schemas/"


def is_model(value: object) -> bool:
    """Whether ``value`` is a pydantic model class."""
    return isinstance(value, type) and issubclass(value, BaseModel)


# At most this many failures are listed (a list of 200 000 bad items would otherwise
# answer 40 MB), and the first few of them in the message.
MAX_FIELDS = 20
MAX_IN_MESSAGE = 3


def validate(model: type[BaseModel], data: object, what: str, context: dict | None = None):
    """``data`` as an instance of ``model``; ``context`` reaches the model's validators
    (``info.context``).

    :raises BadRequest: naming the failing fields in ``fields`` (at most
        :data:`MAX_FIELDS`; ``more_fields`` counts the rest), ``what`` saying where: "The
        request body", "The query".
    """
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        fields = field_errors(exc)
        listed = "; ".join(
            f"{error['field'] or '(whole)'}: {error['message']}"
            for error in fields[:MAX_IN_MESSAGE]
        )
        more = exc.error_count() - min(len(fields), MAX_IN_MESSAGE)
        error = BadRequest(
            f"{what} is not valid: {listed}" + (f" (and {more} more)" if more else "")
        )
        error.data = {"fields": fields}
        if exc.error_count() > len(fields):
            error.data["more_fields"] = exc.error_count() - len(fields)
        raise error from None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """The first :data:`MAX_FIELDS` failures of ``exc`` as ``{"field": "items.0.name",
    "message": ..., "type": ...}``: no ``input`` values (pydantic's own messages may still
    quote a part of what was sent, as a bad UUID's character), no links to its docs."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in errors[:MAX_FIELDS]
    ]


def query_data(model: type[BaseModel], args) -> dict[str, Any]:
    """The query parameters ``model`` names (as its schema names them: aliases included),
    from werkzeug's ``MultiDict``: every value of a parameter whose schema is an array,
    the first one of the others."""
    data: dict[str, Any] = {}
    for name, many in _query_fields(model):
        if name in args:
            data[name] = args.getlist(name) if many else args.get(name)
    return data


@functools.cache
def _query_fields(model: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    """Each query parameter of ``model``, and whether it takes many values: read from the
    schema that documents it, so that parsing and the document agree."""
    properties = model.model_json_schema(mode="validation").get("properties", {})
    return tuple((name, _is_array(schema)) for name, schema in properties.items())


def _is_array(schema: dict) -> bool:
    if schema.get("type") == "array":
        return True
    return any(_is_array(branch) for branch in schema.get("anyOf", ()))


class Operation(dict):
    """An OpenAPI operation object that also carries the schemas its ``$ref`` names
    (``components``), for the document of every tenant that serves it."""

    components: dict[str, dict]

    def __init__(self, *args, components: dict[str, dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.components = components or {}


def model_schema(model, mode: str, components: dict[str, dict]) -> dict:
    """The JSON schema of ``model`` (a pydantic model, or a type such as ``list[Model]``;
    ``mode``: "validation" for what a request may send, "serialization" for what an answer
    holds), with the schemas of its nested models added to ``components`` and referred to
    there. A nested model whose schema differs from one already there under its name (its
    validation and serialization schemas, say) is added as ``Name-Output``, ``Name-2``...

    :raises TypeError: ``model`` is not a type pydantic can describe.
    """
    try:
        if is_model(model):
            schema = model.model_json_schema(ref_template=COMPONENTS + "{model}", mode=mode)
        else:
            schema = TypeAdapter(model).json_schema(ref_template=COMPONENTS + "{model}", mode=mode)
    except PydanticUserError as exc:
        raise TypeError(f"no JSON schema can describe {model!r}: {exc}") from None
    definitions = schema.pop("$defs", {})
    renames = {}
    for name, definition in definitions.items():
        if components.get(name, definition) != definition:
            suffix = "-Output" if mode == "serialization" else "-Input"
            new, number = name + suffix, 2
            while components.get(new, definition) != definition:
                new, number = f"{name}-{number}", number + 1
            renames[COMPONENTS + name] = COMPONENTS + new
    for name, definition in definitions.items():
        target = renames.get(COMPONENTS + name, COMPONENTS + name).removeprefix(COMPONENTS)
        components[target] = _renamed(definition, renames)
    return _renamed(schema, renames)


def _renamed(schema, renames: dict[str, str]):
    """``schema`` with each ``$ref`` that ``renames`` names pointed at its new name."""
    if not renames:
        return schema
    if isinstance(schema, dict):
        return {
            key: renames.get(value, value) if key == "$ref" else _renamed(value, renames)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_renamed(item, renames) for item in schema]
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


class ModelJSONProvider(DefaultJSONProvider):
    """Flask's JSON, which also writes pydantic models (as their schema names their
    fields: by alias), wherever an answer holds one (``[Item(...)]``, ``{"item": ...}``)."""

    @staticmethod
    def default(value):
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True)
        return DefaultJSONProvider.default(value)
