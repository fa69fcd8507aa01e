"""flask-restful's Api, made to leave errors to the app's own JSON handlers."""

from __future__ import annotations

import json

from flask import Flask, Response, request
from flask_restful import Api, Resource
from werkzeug.exceptions import BadRequest


class TenantApi(Api):
    """An Api whose errors go through :mod:`tenantry.errors` like every other error.

    flask-restful routes exceptions raised in its resources to ``handle_error``, which
    answers ``{"message": ...}`` and turns anything that is not an HTTPException into a 500
    in production. Handing every error straight back to Flask keeps one error shape.
    """

    def error_router(self, original_handler, e):
        return original_handler(e)


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


class StorageResource(Resource):
    """A resource over the tenant's database and storage root (see :func:`storage_kwargs`)."""

    def __init__(self, database, storage):
        self.database = database
        self.storage = storage


def storage_kwargs(app: Flask) -> dict:
    """``resource_class_kwargs`` for a :class:`StorageResource` of ``app``."""
    return {
        "database": app.extensions["tenantry.db"],
        "storage": app.extensions["tenantry.storage"],
    }
