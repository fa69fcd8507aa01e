"""The one JSON error shape, for tenant apps and for the dispatcher alike.

Every error any layer produces goes through :func:`error_response`:
``{"error": "not_found", "message": "No such file: report.csv"}`` (plus optional keys).
"""

from __future__ import annotations

import errno
import json
import logging
import sys
from collections.abc import Iterable

from flask import Flask, Response
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from tenantry.jobs.errors import JobQueueFull
from tenantry.storage.errors import ObjectStoreError

log = logging.getLogger(__name__)

ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
    507: "insufficient_storage",
}
# Seconds a client is told to wait when the object store does not answer.
STORAGE_RETRY_AFTER = 5


class InsufficientStorage(HTTPException):
    """507: werkzeug has no class of its own for it."""

    code = 507
    description = "There is not enough storage left for this request."


# Headers of a werkzeug HTTPException that describe its HTML body, not the error itself.
_BODY_HEADERS = frozenset({"content-type", "content-length"})


def error_name(status: int) -> str:
    """The snake_case name of an HTTP status, as the ``error`` key carries it."""
    if status in ERROR_NAMES:
        return ERROR_NAMES[status]
    words = HTTP_STATUS_CODES.get(status, "error").lower()
    return "".join(ch if ch.isalnum() else "_" for ch in words).strip("_")


def error_response(
    status: int,
    message: str,
    headers: Iterable[tuple[str, str]] = (),
    **extra: object,
) -> Response:
    """A complete JSON error response; also a WSGI app, so the dispatcher can use it."""
    body = {"error": error_name(status), "message": message, **extra}
    response = Response(
        json.dumps(body) + "\n", status=status, mimetype="application/json", headers=headers
    )
    if status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def http_error_response(exc: HTTPException) -> Response:
    """The JSON form of a werkzeug HTTPException, keeping headers such as Allow."""
    headers = [
        # Flask builds Allow from a set; sorted, it reads the same in every process.
        (k, ", ".join(sorted(v.split(", "))) if k.lower() == "allow" else v)
        for k, v in exc.get_headers()
        if k.lower() not in _BODY_HEADERS
    ]
    extra = getattr(exc, "data", None)
    extra = extra if isinstance(extra, dict) else {}
    extra = {k: v for k, v in extra.items() if k not in ("error", "message")}
    return error_response(
        exc.code or 500, exc.description or error_name(exc.code), headers, **extra
    )


def _unexpected_error(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return http_error_response(exc)
    if _is_database_away(exc):
        log.warning("the tenant's database does not answer: %s", type(exc).__name__)
        return error_response(
            503,
            "The tenant's database does not answer; try again shortly.",
            [("Retry-After", str(DATABASE_RETRY_AFTER))],
        )
    if _is_disk_full(exc):
        log.error("no room left on the disk: %s", exc)
        return error_response(
            507,
            "The server has no room left to store this; try again later.",
            [("Retry-After", str(DISK_FULL_RETRY_AFTER))],
        )
    log.exception("unhandled exception")
    return error_response(500, "The server failed to handle this request.")


# A full disk (or a filesystem quota) is the server's storage running out, the 507 the
# tenant's quota answers too, but with a Retry-After: space may be freed.
DISK_FULL_RETRY_AFTER = 60
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT anywhere in the chain of ``exc``: a file write of our own, SQLite's
    "database or disk is full", or PostgreSQL's disk_full (SQLSTATE 53100)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            return True
        if getattr(exc, "sqlstate", None) == "53100" or "database or disk is full" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__ or getattr(exc, "orig", None), seen + 1
    return False


# A database restarting (or a connection it dropped) is a 503 the client may retry, not
# a 500: the next connection of the pool is a new one.
DATABASE_RETRY_AFTER = 5


def _is_database_away(exc: Exception) -> bool:
    # SQLAlchemy is looked up, not imported: this module answers before it is loaded, and
    # an error of it cannot happen before it is.
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None:
        return False
    if isinstance(exc, errors.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, errors.OperationalError | errors.InterfaceError) and (
        "connect" in str(exc.orig).lower() or "terminat" in str(exc.orig).lower()
    )


def _storage_unavailable(exc: Exception) -> Response:
    """The object store failed or is away: the client may try again (503), the log says
    which operation on which key (never a credential)."""
    log.warning("object storage failed: %s", exc)
    return error_response(
        503,
        "The tenant's file storage does not answer; try again shortly.",
        [("Retry-After", str(STORAGE_RETRY_AFTER))],
    )


def _queue_full(exc: JobQueueFull) -> Response:
    """A route let the tenant's full job queue through: 429, its message says why."""
    return error_response(429, f"{exc}; try again once some have run.")


def register_error_handlers(app: Flask) -> None:
    """Make every error of ``app`` (any status, any blueprint, any exception) JSON."""

    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(ObjectStoreError, _storage_unavailable)
    app.register_error_handler(JobQueueFull, _queue_full)
    app.register_error_handler(Exception, _unexpected_error)
