"""Logging, configured once: every line names its tenant and request id.

:class:`RequestLog` is the outermost WSGI layer. It echoes or generates ``X-Request-ID``,
and writes one access line per request (method, path without query string, status,
duration). Headers and bodies are never logged, so tokens and passwords cannot leak here.
"""

from __future__ import annotations

import logging
import logging.config
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass

from werkzeug.wsgi import ClosingIterator

access_log = logging.getLogger("tenantry.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass
class RequestContext:
    request_id: str
    tenant: str = "-"


_current: ContextVar[RequestContext | None] = ContextVar("tenantry_request", default=None)


def set_request_tenant(slug: str) -> None:
    """Name the tenant of the request being served, for every later log line."""
    context = _current.get()
    if context is not None:
        context.tenant = slug


class RequestContextFilter(logging.Filter):
    """Adds ``tenant`` and ``request_id`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.tenant = context.tenant if context else "-"
        record.request_id = context.request_id if context else "-"
        return True


_configured = False


def configure_logging(level: str = "INFO") -> None:
    """Install tenantry's logging configuration; later calls do nothing."""
    global _configured
    if _configured:
        return
    _configured = True
    # The line format names no caller, thread or process: do not collect them for every
    # record (the logging HOWTO's "Optimization"; it saves a third of an access line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request": {"()": RequestContextFilter}},
            "formatters": {
                "line": {
                    "format": "%(asctime)s %(levelname)s tenant=%(tenant)s "
                    "request=%(request_id)s %(name)s: %(message)s"
                }
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "line",
                    "filters": ["request"],
                }
            },
            "loggers": {"tenantry": {"level": level.upper(), "handlers": ["stderr"]}},
        }
    )


class RequestLog:
    """WSGI middleware: request id in and out, one access log line per request."""

    def __init__(self, app):
        if not callable(app):
            raise TypeError("RequestLog needs a WSGI application")
        self.app = app

    def __call__(self, environ, start_response):
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
        environ["tenantry.request_id"] = request_id
        context = RequestContext(request_id)
        token = _current.set(context)
        started = time.perf_counter()
        status_line = ["-"]

        def start_response_with_id(status, headers, exc_info=None):
            status_line[0] = status.split(" ", 1)[0]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        def finish() -> None:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s %.1fms",
                    environ.get("REQUEST_METHOD", "-"),
                    # ascii() escapes control characters: a path cannot forge log lines.
                    ascii(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))[1:-1][
                        :512
                    ],
                    status_line[0],
                    (time.perf_counter() - started) * 1000,
                )
            try:
                _current.reset(token)
            except ValueError:  # closed from another context than the one that called
                _current.set(None)

        try:
            body = self.app(environ, start_response_with_id)
        except BaseException:
            finish()
            raise
        # The body is sent after this returns: log it, and let go of the request's tenant
        # and id, only when the server closes it (lines logged while streaming keep both).
        return _closing(body, finish, environ.get("wsgi.file_wrapper"))


def _closing(body, callback, file_wrapper):
    """``body`` with ``callback`` run when the server closes it. A server's own file
    wrapper keeps its type (the server sends those with sendfile), so its ``close`` is
    wrapped in place."""
    if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
        original = getattr(body, "close", None)

        def close() -> None:
            try:
                if original is not None:
                    original()
            finally:
                callback()

        body.close = close
        return body
    return ClosingIterator(body, callback)
