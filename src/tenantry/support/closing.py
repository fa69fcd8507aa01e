"""Running code when the server closes a response body, that is once the body is sent."""

from __future__ import annotations

from collections.abc import Callable


def call_on_close(body, callback: Callable[[], None], environ) -> object:
    """``body`` with ``callback`` run when the server closes it. A server's own file
    wrapper keeps its type (the server sends those with sendfile), so its ``close`` is
    wrapped in place."""
    file_wrapper = environ.get("wsgi.file_wrapper")
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
    return _Closing(body, callback)


class _Closing:
    """``body`` for the server, with ``callback`` after the body's own ``close``. Unlike
    werkzeug's ClosingIterator it hands out the body's own iterator: the chunks do not
    pass through one more Python call each, per layer that wraps the body."""

    __slots__ = ("_body", "_callback")

    def __init__(self, body, callback: Callable[[], None]):
        self._body = body
        self._callback = callback

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._callback()
