"""Request bodies that must keep arriving: a client that stops sending holds nothing for
long.

A tenant has ``MAX_CONCURRENT_REQUESTS`` slots per worker. A request whose body trickles in
(or stops: ten connections that send a login's headers and one byte of its body) would
hold a slot for as long as it likes, and lock the tenant's other clients out. So:

- A small body (a ``Content-Length`` within the tenant's ``MAX_JSON_BODY``: every JSON
  request) is read whole *before* the request takes a slot. Waiting for it costs the
  worker a greenlet, not the tenant a slot.
- Any body that stops arriving for :data:`BODY_IDLE_SECONDS` is given up with 408 (a
  large upload included, which holds its slot while it streams).

The time limits need gevent (``tenantry serve``'s workers): there a read that waits is a
greenlet that can be interrupted. Other workers have gunicorn's own worker timeout.
"""

from __future__ import annotations

import contextlib
import io
import sys

from werkzeug.exceptions import RequestTimeout

BODY_IDLE_SECONDS = 10.0
READ_SIZE = 64 * 1024
SLOW_BODY = "The request body stopped arriving; send it at once."


class SlowBody(RequestTimeout):
    """The body stopped arriving (408)."""

    description = SLOW_BODY


def _deadline(seconds: float):
    """A block that raises :class:`SlowBody` after ``seconds`` (under gevent; elsewhere
    nothing: gunicorn's worker timeout is the limit)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        return sys.modules["gevent"].Timeout(seconds, SlowBody())
    return contextlib.nullcontext()


def read_small_body(environ, limit: int) -> bool:
    """Read a body of at most ``limit`` bytes (by its Content-Length) now, into memory,
    and give it to the app from there; returns whether it did (a larger, chunked or empty
    body is left to the app, behind :class:`IdleInput`).

    :raises SlowBody: no byte for :data:`BODY_IDLE_SECONDS`.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not 0 < length <= limit or chunked:  # (gunicorn sets wsgi.input_terminated always)
        return False
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    while size < length:
        with _deadline(BODY_IDLE_SECONDS):
            chunk = stream.read(min(READ_SIZE, length - size))
        if not chunk:
            break  # the client went away: the app sees a short body, as it would have
        chunks.append(chunk)
        size += len(chunk)
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    return True


class IdleInput:
    """``wsgi.input`` that gives up (:class:`SlowBody`) when no byte arrives for
    :data:`BODY_IDLE_SECONDS`."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        if 0 <= size <= READ_SIZE:
            with _deadline(BODY_IDLE_SECONDS):
                return self.stream.read(size)
        chunks, wanted = [], size  # a large read: each part of it must keep arriving
        while wanted < 0 or wanted > 0:
            with _deadline(BODY_IDLE_SECONDS):
                chunk = self.stream.read(READ_SIZE if wanted < 0 else min(READ_SIZE, wanted))
            if not chunk:
                break
            chunks.append(chunk)
            wanted = wanted - len(chunk) if wanted > 0 else wanted
        return b"".join(chunks)

    def readline(self, size: int = -1) -> bytes:
        with _deadline(BODY_IDLE_SECONDS):
            return self.stream.readline(size)

    def __iter__(self):
        while line := self.readline():
            yield line

    def __getattr__(self, name):
        return getattr(self.stream, name)
