"""flask-restful's Api, made to leave errors to the app's own JSON handlers."""

from __future__ import annotations

import json

from flask import Response, request
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
