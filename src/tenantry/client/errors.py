"""The error every client of tenantry raises for an error answer."""

from __future__ import annotations

import httpx


class TenantryError(Exception):
    """An error answer of the API (``status`` 0 for a connection failure)."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        # Seconds the server asked to wait (its Retry-After), where the client reads it.
        self.retry_after: float | None = None

    @classmethod
    def from_response(cls, response: httpx.Response) -> TenantryError:
        try:
            body = response.json()
            return cls(response.status_code, str(body["error"]), str(body["message"]))
        except (ValueError, KeyError, TypeError):
            return cls(response.status_code, "http_error", response.reason_phrase)
