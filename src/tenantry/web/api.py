"""The resource layer endpoint modules build on: :class:`TenantApi` and
:class:`TenantResource` (flask-restful with the platform's one error shape and no content
negotiation), JSON bodies and queries read within their limits (:func:`json_object`,
:func:`query_object`), and the small helpers resources share.

Modules import these from :mod:`tenantry.endpoint`, the public face."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar, overload

from flask import Flask, Response, current_app, request
from flask_restful import Api, Resource
from pydantic import BaseModel
from sqlalchemy.orm import Session
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
)
from werkzeug.wsgi import LimitedStream

from tenantry.data import audit as audit_log
from tenantry.data.db import TenantDatabase
from tenantry.storage.local import Storage
from tenantry.web.schemas import query_data, validate
from tenantry.web.tenant import Tenant, serving_tenant

M = TypeVar("M", bound=BaseModel)


class TenantApi(Api):
    """flask-restful's Api for a module's blueprint, with tenantry's error shape.

    flask-restful wraps the app's exception handlers so that errors raised in its
    resources reach its own ``handle_error``, which answers ``{"message": ...}`` and turns
    anything that is not an HTTPException into a 500 in production. This Api never
    installs that wrapper (see ``_init_app``), so every error answers in the one JSON shape.
    """

    #: What the module loader looks for (rather than importing this class): this Api's
    #: deferred registration adds views and keeps nothing of the app it is given.
    registers_shared_views = True

    def make_response(self, data, code=200, headers=None, **_options) -> Response:
        """Every resource answers JSON: no content negotiation, one serialisation. A
        pydantic model answers as its JSON (``model_dump_json``)."""
        app = current_app._get_current_object()  # one context lookup, not two
        if type(data) is not dict and isinstance(data, BaseModel):
            text = data.model_dump_json(by_alias=True)  # as its schema documents it
        else:
            text = app.json.dumps(data)
        response = app.response_class(text + "\n", status=code, mimetype="application/json")
        if headers:
            response.headers.extend(headers)
        return response

    def _init_app(self, app: Flask) -> None:
        # Register the views only: no error_router around the app's exception handlers.
        for resource, urls, kwargs in self.resources:
            self._register_view(app, resource, *urls, **kwargs)
        # flask-restful keeps the setup state, and through it the app: the views outlive
        # that app in a shared route kit, and must not keep it (or its secret) alive.
        self.blueprint_setup = None


class TenantResource(Resource):
    """A flask-restful Resource that serves whichever tenant the request is for.

    One set of view functions serves every tenant with the same endpoint modules, so a
    resource holds no tenant of its own: these properties read the serving tenant's.
    """

    def dispatch_request(self, *args, **kwargs):
        """flask-restful's, less its content negotiation for a resource without
        ``representations`` of its own (tenantry's have none: every answer is JSON). That
        parsed every request's Accept header to match it against nothing, ~9 us of a
        landing page's ~170 in process. A resource that declares representations is
        dispatched by flask-restful, negotiation and all."""
        if self.representations:
            return super().dispatch_request(*args, **kwargs)
        method = request.method
        handler = getattr(self, method.lower(), None)
        if handler is None and method == "HEAD":
            handler = getattr(self, "get", None)
        if handler is None:  # the route allows only the methods defined: not reached
            raise MethodNotAllowed()
        decorators = self.method_decorators
        if isinstance(decorators, Mapping):
            decorators = decorators.get(method.lower(), [])
        for decorator in decorators:
            handler = decorator(handler)
        return handler(*args, **kwargs)

    @property
    def tenant(self) -> Tenant:
        return serving_tenant()

    @property
    def config(self) -> dict:
        return serving_tenant().config

    @property
    def database(self) -> TenantDatabase:
        return serving_tenant().database

    @property
    def storage(self) -> Storage:
        return serving_tenant().storage


@overload
def json_object(model: None = None, optional: bool = False) -> dict: ...
@overload
def json_object(model: type[M], optional: bool = False) -> M: ...
def json_object(model=None, optional=False):
    """The request body as a JSON object of valid text, read under the tenant's
    ``MAX_JSON_BODY``; validated by ``model`` (a pydantic model) when given, whose
    validators find the serving tenant in ``info.context["tenant"]``. With ``optional``,
    an empty body is an empty object.

    :raises RequestEntityTooLarge: the body is over ``MAX_JSON_BODY``: refused from its
        Content-Length before any of it is read, or as soon as a chunked body passes it.
    :raises BadRequest: not JSON, not an object, nested too deep, or holding strings that
        are not valid Unicode (lone surrogates from ``\\ud800`` escapes) or hold NUL; or
        cut off; or not valid for ``model`` (its ``fields`` list each failing field).
    """
    raw = _bounded_body(current_app.config["MAX_JSON_BODY"])
    if optional and not raw:
        body = {}
    else:
        try:
            body = json.loads(raw)
            valid_text = json.dumps(body, ensure_ascii=False).encode()
        except (ValueError, RecursionError, UnicodeError):
            body = None
        if not isinstance(body, dict) or not valid_text:
            raise BadRequest("The request body must be a JSON object.")
        if _holds_nul(body):
            raise BadRequest(NUL_REFUSED)
    if model is None:
        return body
    return validate(model, body, "The request body", {"tenant": serving_tenant()})


# PostgreSQL cannot store it in text, SQLite stores it and C code stops at it: refused on
# both, so that the two backends give one answer.
NUL_REFUSED = "The request body may not hold the NUL character (\\u0000) in any string."


def _holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def query_object(model: type[M]) -> M:
    """The request's query parameters, validated by ``model`` (a pydantic model): a field
    that is a list takes every value of its parameter, the others the first. Parameters
    the model does not name are ignored.

    :raises BadRequest: not valid for ``model`` (its ``fields`` list each failing field).
    """
    return validate(
        model, query_data(model, request.args), "The query", {"tenant": serving_tenant()}
    )


_READ_SIZE = 64 * 1024


def _bounded_body(limit: int) -> bytes:
    """The request body, read only while it stays within ``limit`` bytes."""
    too_large = RequestEntityTooLarge(f"A JSON body may have at most {limit} bytes.")
    length = request.content_length
    if length is not None and length > limit:
        raise too_large
    environ = request.environ
    if environ.get("wsgi.input_terminated"):  # chunked, ended by the server
        stream = environ["wsgi.input"]
    elif length:
        stream = LimitedStream(environ["wsgi.input"], length)
    else:
        return b""
    chunks, size = [], 0
    while size <= limit:
        try:
            chunk = stream.read(min(_READ_SIZE, limit + 1 - size))
        except HTTPException:  # the input's own answer (a body that stopped coming: 408)
            raise
        except Exception as exc:  # the server's own error for a broken connection
            raise ClientDisconnected("The request body was cut off.") from exc
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise too_large
    if length is not None and size != length:
        raise ClientDisconnected(f"The request body ended after {size} of its {length} bytes.")
    return b"".join(chunks)


def query_number(name: str, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` as a whole number from ``low`` to ``high``; ``default``
    when it is not given. :raises BadRequest: it is not such a number."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,12}", raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


def query_text(name: str) -> str | None:
    """The query parameter ``name``: text of at most 255 characters without NUL, or None.
    :raises BadRequest:"""
    value = request.args.get(name)
    if value is not None and ("\x00" in value or len(value) > 255):
        raise BadRequest(f"{name} must be text of at most 255 characters, without NUL.")
    return value


def query_time(name: str) -> str | None:
    """The query parameter ``name``, an ISO 8601 time (without an offset: UTC), as the
    audit log stores times; None if not given. :raises BadRequest:"""
    value = request.args.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return audit_log.format_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be an ISO 8601 time, e.g. 2026-12-01T09:30:00Z.") from None


def audit(session: Session, action: str, target: str, outcome: str = "success") -> None:
    """Record ``action`` (``"<module>.<verb>"``, e.g. ``"note.create"``) on ``target`` (a
    name, never a secret) in the tenant's audit log, in ``session``'s transaction, so the
    entry exists exactly when the change does. Call it as the transaction's last write:
    it holds the log's lock until the transaction ends. The actor (the token's user, or
    ``anonymous``), request id and client address come from the request being served.
    ``outcome`` is ``"success"`` or ``"failure"``."""
    audit_log.record(session, action, target, outcome)


def no_content() -> Response:
    """An empty 204, without the Content-Type a default Response would carry."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response
