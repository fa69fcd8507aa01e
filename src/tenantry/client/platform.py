"""PlatformClient: a Python client for the platform API of a home's admin address.

A signup flow, as an operator (``tenantry operators add`` made one):

    with PlatformClient("http://127.0.0.1:9000") as platform:
        platform.login("ops", operator_password)
        platform.create_tenant("acme", "Acme Corp", hosts=["acme.example.com"])
        platform.add_user("acme", "admin", first_password, "admin")
    # the tenant's admin then signs in on the tenants' address:
    with TenantClient("http://127.0.0.1:8000", "acme") as client:
        client.login("admin", first_password)

``url`` is the admin address (``tenantry serve --admin-bind``), without ``/api``. An
operator's token lasts 15 minutes and is never renewed here: no password is kept, so once
it has expired every call raises :class:`~tenantry.client.TenantryError` with status 401,
and the caller signs in again (``login``) if it still has the password. ``token_expires_at``
says when that will be.

Reads (GET) are retried on connection errors; changes never are (a lost answer may hide a
change that was made). Every error answer raises :class:`~tenantry.client.TenantryError`
(``status``, ``error``, ``message``); it also has ``retry_after``: the seconds of the answer's
Retry-After header (a 429 of a locked-out operator), else None. A connection failure is
status 0, ``connection_error``.

Lists the API answers whole (``users``, ``backups``) are returned as lists; paged answers
(``tenants_page``, ``audit``, ``jobs``) as the API's ``{"data": [...], "total": N}``;
``tenants`` walks every page and returns all the rows.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from tenantry.client.errors import TenantryError

RETRIES = 3
RETRY_BACKOFF = 0.2
PAGE_SIZE = 1000  # the platform API's largest page of tenants
AUDIT_FILTERS = ("action", "actor", "since", "limit", "offset")
USER_CHANGES = ("password", "active", "roles", "role")


class PlatformClient:
    """A client of the platform API at ``url`` (the admin address)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = RETRIES,
        transport: httpx.BaseTransport | None = None,
    ):
        self.root = url.rstrip("/") + "/api"
        self.token = token
        self.retries = retries
        self._http = httpx.Client(timeout=timeout, transport=transport)

    # -- session ---------------------------------------------------------------------

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def login(self, name: str, password: str) -> str:
        """Sign in as operator ``name``; keeps the token (not the password) and returns
        it. :raises TenantryError: 401 wrong name or password, 429 locked out
        (``retry_after``)."""
        body = {"name": name, "password": password}
        response = self._send("POST", "/login", auth=False, json=body)
        self.token = response.json()["access_token"]
        return self.token

    @property
    def token_expires_at(self) -> float | None:
        """When the token expires (seconds since the epoch, as ``time.time()``), read
        from the token itself; None without a token or if it cannot be read."""
        if not self.token:
            return None
        try:
            payload = self.token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return float(claims["exp"])
        except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
            return None

    def me(self) -> dict:
        """The signed-in operator: ``{"name", "read_only", "active", "created"}``."""
        return self._json("GET", "/me")

    # -- tenants ---------------------------------------------------------------------

    def tenants(self, search: str | None = None, *, page_size: int = PAGE_SIZE) -> list[dict]:
        """Every tenant's row (by slug) whose slug, name or host holds ``search``, read
        page by page."""
        rows: list[dict] = []
        while True:
            page = self.tenants_page(search, limit=page_size, offset=len(rows))
            rows += page["data"]
            if not page["data"] or len(rows) >= page["total"]:
                return rows

    def tenants_page(
        self, search: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> dict:
        """One page of tenants' rows: ``{"data": [...], "total": N}`` (the server's
        default ``limit`` is 100, at most 1000)."""
        params = _params(q=search or None, limit=limit, offset=offset)
        return self._json("GET", "/tenants", params=params)

    def create_tenant(
        self,
        slug: str,
        name: str | None = None,
        hosts: Iterable[str] = (),
        blueprints: Iterable[str] | None = None,
    ) -> dict:
        """Create a tenant (as ``tenantry tenants create``); returns its row. ``blueprints``
        None: the default ones. :raises TenantryError: 409 it exists, 400 refused."""
        body: dict[str, Any] = {"slug": slug, "hosts": list(hosts)}
        if name is not None:
            body["name"] = name
        if blueprints is not None:
            body["blueprints"] = list(blueprints)
        return self._json("POST", "/tenants", json=body)

    def tenant(self, slug: str) -> dict:
        """One tenant: its row and figures. :raises TenantryError: 404 no such tenant."""
        return self._json("GET", f"/tenants/{_segment(slug)}")

    def set_enabled(self, slug: str, enabled: bool) -> dict:
        """Enable or disable a tenant; returns the tenant as :meth:`tenant` does."""
        return self._json("PATCH", f"/tenants/{_segment(slug)}", json={"enabled": enabled})

    def set_maintenance(self, slug: str, on: bool, retry_after: int | None = None) -> dict:
        """Take a tenant down for maintenance (its answers say Retry-After:
        ``retry_after`` seconds, else the server's default) or bring it back up; returns
        the tenant as :meth:`tenant` does."""
        body: dict[str, Any] = {"maintenance": on}
        if retry_after is not None:
            body["retry_after"] = retry_after
        return self._json("PATCH", f"/tenants/{_segment(slug)}", json=body)

    def rotate_secret(self, slug: str) -> None:
        """Give the tenant a new secret key (its users' tokens end)."""
        self._send("POST", f"/tenants/{_segment(slug)}/rotate-secret")

    def delete_tenant(self, slug: str) -> dict:
        """Delete a tenant, after an archive in the trash: ``{"deleted", "archive"}``."""
        return self._json("DELETE", f"/tenants/{_segment(slug)}")

    # -- users -----------------------------------------------------------------------

    def users(self, slug: str) -> list[dict]:
        """The tenant's users: ``[{"username", "roles", "active"}, ...]``."""
        return self._json("GET", f"/tenants/{_segment(slug)}/users")["data"]

    def add_user(self, slug: str, username: str, password: str, role: str = "user") -> dict:
        """Add a user of ``role`` (``"admin"`` or ``"user"``); returns it.
        :raises TenantryError: 409 the name is taken, 400 refused."""
        body = {"username": username, "password": password, "role": role}
        return self._json("POST", f"/tenants/{_segment(slug)}/users", json=body)

    def change_user(self, slug: str, username: str, **changes: Any) -> dict:
        """Change a user: ``password="..."``, ``active=False``, ``roles=["admin"]`` (or
        ``role="admin"``); returns it. :raises TenantryError: 409 it would leave the
        tenant without an active admin, 404 no such user."""
        unknown = set(changes) - set(USER_CHANGES)
        if unknown:
            raise TypeError(f"change_user() got unknown changes: {', '.join(sorted(unknown))}")
        if "role" in changes:
            changes["roles"] = [changes.pop("role")]
        path = f"/tenants/{_segment(slug)}/users/{_segment(username)}"
        return self._json("PATCH", path, json=changes)

    def delete_user(self, slug: str, username: str) -> None:
        """:raises TenantryError: 409 the tenant's last active admin, 404 no such user."""
        self._send("DELETE", f"/tenants/{_segment(slug)}/users/{_segment(username)}")

    # -- backups, audit, jobs --------------------------------------------------------

    def backup(self, slug: str) -> str:
        """Queue a backup now, as a job; returns the job's id (the one already queued, if
        one is)."""
        return self._json("POST", f"/tenants/{_segment(slug)}/backups")["job"]

    def backups(self, slug: str) -> list[dict]:
        """The tenant's stored backups: ``[{"name", "bytes"}, ...]``."""
        return self._json("GET", f"/tenants/{_segment(slug)}/backups")["data"]

    def audit(self, slug: str, **filters: Any) -> dict:
        """A page of the tenant's audit log, newest first: ``{"data": [...], "total": N}``.
        Filters: ``action``, ``actor`` (e.g. ``"operator:ops"``), ``since`` (a datetime,
        or ISO 8601 text; without an offset it is UTC), ``limit`` (at most 500),
        ``offset``."""
        unknown = set(filters) - set(AUDIT_FILTERS)
        if unknown:
            raise TypeError(f"audit() got unknown filters: {', '.join(sorted(unknown))}")
        since = filters.get("since")
        if isinstance(since, datetime):
            filters["since"] = since.isoformat()
        return self._json("GET", f"/tenants/{_segment(slug)}/audit", params=_params(**filters))

    def verify_audit(self, slug: str) -> dict:
        """Check the audit log's hash chain: ``{"ok": True, "entries", "head"}``, or
        ``{"ok": False, "broken_at", "reason"}``."""
        return self._json("GET", f"/tenants/{_segment(slug)}/audit/verify")

    def jobs(
        self,
        slug: str,
        state: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict:
        """A page of the tenant's jobs, newest first: ``{"data": [...], "total": N}``
        (``limit`` at most 100)."""
        params = _params(state=state, limit=limit, offset=offset)
        return self._json("GET", f"/tenants/{_segment(slug)}/jobs", params=params)

    # -- transport -------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        attempts = self.retries + 1 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, self.root + path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 == attempts:
                    error = TenantryError(0, "connection_error", str(exc))
                    raise error from exc
                time.sleep(RETRY_BACKOFF * (attempt + 1))
                continue
            if response.status_code >= 400:
                error = TenantryError.from_response(response)
                error.retry_after = _retry_after(response)
                raise error
            return response
        raise AssertionError("unreachable")


def _segment(name: str) -> str:
    """A name as one URL path segment: nothing in it can change the path or the query."""
    return quote(name, safe="")


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _retry_after(response: httpx.Response) -> int | None:
    """The Retry-After header in seconds (from either of its forms), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return int(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0, int(moment.timestamp() - time.time() + 0.999))
