"""Running code when the server closes a response body, that is once the body is sent."""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.wsgi import ClosingIterator


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
    return ClosingIterator(body, callback)
