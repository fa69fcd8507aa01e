"""Logging, configured once: every line names its tenant and request id.

:class:`RequestLog` is the outermost WSGI layer. It echoes or generates ``X-Request-ID``,
and writes one access line per request (method, path without query string, status,
duration). Headers and bodies are never logged, so tokens and passwords cannot leak here.
"""

from __future__ import annotations

import logging
import logging.config
import os
import random
import re
import sys
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass

from tenantry.server.metrics import current as current_metrics
from tenantry.support.closing import call_on_close

access_log = logging.getLogger("tenantry.access")
# Request ids: 64 random bits name a request well enough and need no system call. A
# generator of their own (an endpoint module's random.seed() cannot make ids repeat, and
# ids reveal nothing of the process's shared generator), seeded afresh in every forked
# worker, so workers never repeat each other.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)

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
    """Adds ``tenant`` and ``request_id`` to every record (a record about a tenant
    outside its requests names it with ``extra={"tenant": slug}``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        if context is not None and context.tenant != "-":
            record.tenant = context.tenant
        elif not hasattr(record, "tenant"):
            record.tenant = "-"
        record.request_id = context.request_id if context else "-"
        return True


_configured = False


class _LeanLogger(logging.Logger):
    """A tenantry logger: its line names no caller, so none is looked up (a third of the
    cost of an access line; the logging HOWTO's "Optimization")."""

    def findCaller(self, stack_info=False, stacklevel=1):
        if stack_info:
            return super().findCaller(stack_info, stacklevel)
        return "(unknown file)", 0, "(unknown function)", None


def _skip_what_our_lines_never_show() -> None:
    """Spare tenantry's own records the caller, thread and process look-ups, and only them.

    The switches for threads and processes are process-wide, and other handlers print them
    (gunicorn's error log has ``[%(process)d]``): the record factory fills them in again for
    every record that is not tenantry's.
    """
    global _record_factory
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.split(".")[0] == "tenantry" and type(logger) is logging.Logger:
            logger.__class__ = _LeanLogger
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    make_record = logging.getLogRecordFactory()

    def record_factory(name, *args, **kwargs):
        record = make_record(name, *args, **kwargs)
        # logging.makeLogRecord() asks for a record named None
        if not (isinstance(name, str) and (name.startswith("tenantry.") or name == "tenantry")):
            record.process = os.getpid()
            record.thread = threading.get_ident()
            record.threadName = threading.current_thread().name
            multiprocessing = sys.modules.get("multiprocessing")
            record.processName = (
                multiprocessing.current_process().name if multiprocessing else "MainProcess"
            )
        return record

    logging.setLogRecordFactory(record_factory)
    _record_factory = record_factory


_record_factory = None


class _LineFormatter(logging.Formatter):
    """logging's default line, with the date and time formatted once a second rather than
    once a line (``time.strftime`` was a sixth of an access line's cost)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.stamp(record.created, record.msecs)

    def stamp(self, created: float, msecs: float) -> str:
        """The date and time of a line made at ``created`` (``msecs``: as a LogRecord
        computes them from it)."""
        second = int(created)
        cached = self._second
        if cached[0] != second:
            text = time.strftime(self.default_time_format, self.converter(created))
            cached = self._second = (second, text)
        return self.default_msec_format % (cached[1], msecs)


LINE_FORMAT = (
    "%(asctime)s %(levelname)s tenant=%(tenant)s request=%(request_id)s %(name)s: %(message)s"
)
ACCESS_MESSAGE = "%s %s %s %.1fms client=%s"  # method, path, status, duration, client
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL_ENV_VAR = "TENANTRY_LOG_LEVEL"


def level_from_environ(default: str) -> str:
    """TENANTRY_LOG_LEVEL, or ``default``. :raises ValueError: not a level's name."""
    given = os.environ.get(LEVEL_ENV_VAR, "").strip()
    level = given.upper() or default
    if level not in LEVELS:
        raise ValueError(f"{LEVEL_ENV_VAR} must be one of {', '.join(LEVELS)}, not {given!r}")
    return level


def configure_logging(level: str = "INFO") -> None:
    """Install tenantry's logging configuration; later calls do nothing."""
    global _configured
    if _configured:
        return
    _configured = True
    _skip_what_our_lines_never_show()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request": {"()": RequestContextFilter}},
            "formatters": {
                "line": {
                    "()": _LineFormatter,
                    "format": LINE_FORMAT,
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
    global _as_configured
    platform = logging.getLogger("tenantry")
    handler = platform.handlers[0]
    _as_configured = (platform, handler, handler.filters[0], handler.formatter)


# What configure_logging() set up: the tenantry logger, its stderr handler, that handler's
# filter and formatter. While logging stays so, an access line is written straight to the
# handler (see _direct_handler).
_as_configured: tuple | None = None
# LINE_FORMAT for an access record: its time, tenant and request id, then the message's
ACCESS_LINE = LINE_FORMAT % {
    "asctime": "%s",
    "levelname": "INFO",
    "tenant": "%s",
    "request_id": "%s",
    "name": access_log.name,
    "message": ACCESS_MESSAGE,
}


def _direct_handler() -> logging.StreamHandler | None:
    """tenantry's stderr handler, when logging is as :func:`configure_logging` left it:
    an access record would reach that handler and no other, through no filter but ours,
    formatted by our formatter. Then the line is written to it directly, the same text
    at a third of the cost (no LogRecord, no filter and format calls; an access line
    through logging was a fifth of a landing page's time in this process). Any handler,
    filter, formatter, record factory, level name or patch of logging set up since sends
    the lines through logging again. None otherwise."""
    if _as_configured is None:
        return None
    platform, handler, ours, formatter = _as_configured
    handlers, filters = platform.handlers, handler.filters
    if (
        access_log.handlers
        or access_log.filters
        or not access_log.propagate
        or len(handlers) != 1
        or handlers[0] is not handler
        or platform.filters
        or (platform.propagate and logging.root.handlers)
        or len(filters) != 1
        or filters[0] is not ours
        or handler.formatter is not formatter
        or handler.level > logging.INFO
        or logging.getLogRecordFactory() is not _record_factory
        or type(handler) is not logging.StreamHandler
        or "emit" in vars(handler)
        or type(access_log).handle is not _STOCK_HANDLE
        or type(access_log).callHandlers is not _STOCK_CALL_HANDLERS
        or logging.getLevelName(logging.INFO) != "INFO"
    ):
        return None
    return handler


# logging's own, as imported: a tool that patches them (sentry-sdk's logging integration
# wraps callHandlers) sees every access line through logging.
_STOCK_HANDLE = logging.Logger.handle
_STOCK_CALL_HANDLERS = logging.Logger.callHandlers


def _write_access_line(handler: logging.StreamHandler, context: RequestContext, *fields):
    """The access line as logging would write it through ``handler`` (see
    :func:`_direct_handler`); a failing stream is handled as logging handles it."""
    created = time.time()
    stamp = handler.formatter.stamp(created, int((created - int(created)) * 1000) + 0.0)
    line = ACCESS_LINE % (stamp, context.tenant, context.request_id, *fields)
    try:
        with handler.lock:  # one acquire: handler.flush() would take it again
            stream = handler.stream
            stream.write(line + handler.terminator)
            if hasattr(stream, "flush"):  # as StreamHandler.flush() asks
                stream.flush()
    except RecursionError:
        raise
    except Exception:
        record = access_log.makeRecord(access_log.name, logging.INFO, "", 0, line, (), None)
        handler.handleError(record)


class RequestLog:
    """WSGI middleware: request id in and out, one access log line per request (method,
    path, status, time, client address). Outermost but for the proxy fix of
    :mod:`tenantry.wsgi`, so the address is the client's behind trusted proxies."""

    def __init__(self, app):
        if not callable(app):
            raise TypeError("RequestLog needs a WSGI application")
        self.app = app

    def __call__(self, environ, start_response):
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = (
            incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else f"{_ids.getrandbits(64):016x}"
        )
        environ["tenantry.request_id"] = request_id
        context = RequestContext(request_id)
        metrics = current_metrics()
        token = _current.set(context)
        started = time.perf_counter()
        status_line = ["-"]

        def start_response_with_id(status, headers, exc_info=None):
            status_line[0] = status.split(" ", 1)[0]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        def finish() -> None:
            if metrics is not None:
                metrics.request(context.tenant, status_line[0], time.perf_counter() - started)
            if access_log.isEnabledFor(logging.INFO):
                fields = (
                    environ.get("REQUEST_METHOD", "-"),
                    # ascii() escapes control characters: a path cannot forge log lines.
                    ascii(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))[1:-1][
                        :512
                    ],
                    status_line[0],
                    (time.perf_counter() - started) * 1000,
                    # The peer, or what trusted proxies forwarded (TENANTRY_TRUSTED_PROXIES)
                    ascii(environ.get("REMOTE_ADDR", "-"))[1:-1][:64],
                )
                handler = _direct_handler()
                if handler is not None:
                    _write_access_line(handler, context, *fields)
                else:  # the filter reads the request's ids from the current context
                    entered = _current.set(context)  # (closed from another one: not it)
                    try:
                        access_log.info(ACCESS_MESSAGE, *fields)
                    finally:
                        _current.reset(entered)
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
        return call_on_close(body, finish, environ)
