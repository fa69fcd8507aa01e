"""flask-restful's Api, made to leave errors to the app's own JSON handlers."""

from __future__ import annotations

from flask import request
from flask_restful import Api
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
    """The request body as a JSON object. :raises BadRequest: it is not one."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body
