"""flask-restful's Api, made to leave errors to the app's own JSON handlers."""

from __future__ import annotations

import json

from flask import Flask, Response, current_app, request
from flask_restful import Api, Resource
from werkzeug.exceptions import BadRequest

from tenantry.db import TenantDatabase
from tenantry.storage import TenantStorage


class TenantApi(Api):
    """An Api whose errors go through :mod:`tenantry.errors` like every other error.

    flask-restful wraps the app's exception handlers so that errors raised in its
    resources reach its own ``handle_error``, which answers ``{"message": ...}`` and turns
    anything that is not an HTTPException into a 500 in production. This Api never
    installs that wrapper (see ``_init_app``), so Flask's handlers keep one error shape.
    """

    def make_response(self, data, code=200, headers=None, **_options) -> Response:
        """Every resource answers JSON: no content negotiation, one serialisation."""
        response = current_app.response_class(
            current_app.json.dumps(data) + "\n", status=code, mimetype="application/json"
        )
        if headers:
            response.headers.extend(headers)
        return response

    def _init_app(self, app: Flask) -> None:
        # Register the views only: no error_router around the app's exception handlers.
        for resource, urls, kwargs in self.resources:
            self._register_view(app, resource, *urls, **kwargs)
        # flask-restful keeps the setup state, and through it the app: the views outlive
        # that app in a shared RouteKit, and must not keep it (or its secret) alive.
        self.blueprint_setup = None


def json_object() -> dict:
    """The request body as a JSON object of valid text.

    :raises BadRequest: not JSON, not an object, nested too deep, or holding strings that
        are not valid Unicode (lone surrogates from ``\\ud800`` escapes).
    """
    try:
        body = request.get_json(force=True, silent=True)
        valid_text = json.dumps(body, ensure_ascii=False).encode()
    except (RecursionError, UnicodeEncodeError):
        body = None
    if not isinstance(body, dict) or not valid_text:
        raise BadRequest("The request body must be a JSON object.")
    return body


def no_content() -> Response:
    """An empty 204, without the Content-Type a default Response would carry."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


class TenantResource(Resource):
    """A resource of whichever tenant app serves the request.

    The tenant's services are set up once on its app by the factory and read from there
    per request (``current_app`` is always the serving tenant's app), so a resource holds
    no tenant of its own and one set of view functions can serve every app with the same
    endpoint modules (see :mod:`tenantry.factory`).
    """

    @property
    def app(self) -> Flask:
        return current_app._get_current_object()

    @property
    def config(self):
        return current_app.config

    @property
    def database(self) -> TenantDatabase:
        return current_app.extensions["tenantry.db"]

    @property
    def storage(self) -> TenantStorage:
        return current_app.extensions["tenantry.storage"]
