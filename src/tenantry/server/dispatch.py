"""TenantDispatcher: the WSGI middleware that sends each request to its tenant's app."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from flask import Response
from werkzeug.exceptions import NotFound
from werkzeug.wsgi import ClosingIterator

from tenantry.home.hosts import normal_host
from tenantry.home.layout import WRITES_HELD_RETRY_AFTER
from tenantry.server.log import set_request_tenant
from tenantry.support.locking import shared_lock_if_free
from tenantry.web.errors import error_response

HEALTH_PATH = "/healthz"
# The same words as a known tenant's unknown route: a 404 must not tell them apart.
NO_SUCH_TENANT = NotFound.description
TENANT_UNAVAILABLE = "This tenant is temporarily unavailable."
TENANT_DOWN = "This tenant is down for maintenance; try again later."
WRITES_HELD = "This tenant is being backed up or restored: reads only for now; try again shortly."
PLATFORM_UNAVAILABLE = "This server cannot load its platform modules; its log says why."
READ_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))


class ServedTenant(Protocol):
    """What dispatch reads of a loaded tenant (:class:`tenantry.server.registry.LoadedTenant`)."""

    maintenance: int | None
    app: Callable | None
    writes_held: bool


class Registry(Protocol):
    """What dispatch needs of :class:`tenantry.server.registry.TenantRegistry` (a protocol, so
    that this small module does not import the registry, which builds apps)."""

    platform_error: str | None

    def lookup(self, slug: str, fresh: bool = False) -> ServedTenant | None: ...

    def write_gate(self, slug: str) -> Path: ...

    def slug_for_host(self, host: str) -> str | None: ...


def request_host(environ) -> str:
    """The request's host name, lower case, without a port."""
    return normal_host(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""))


def serve_tenant(registry: Registry, slug: str, environ, start_response):
    """Call the tenant's app: 404 if unknown or disabled, 503 if down for maintenance
    (with Retry-After) or if it cannot start, and 503 with Retry-After for a write while
    a backup or restore holds the tenant's writes."""
    tenant = registry.lookup(slug)
    if tenant is None:
        return error_response(404, NO_SUCH_TENANT)(environ, start_response)
    set_request_tenant(slug)
    if tenant.maintenance is not None:
        retry = [("Retry-After", str(tenant.maintenance))]
        return error_response(503, TENANT_DOWN, retry)(environ, start_response)
    if tenant.app is None:
        return error_response(503, TENANT_UNAVAILABLE)(environ, start_response)
    if "\x00" in environ.get("PATH_INFO", "") or _query_holds_nul(environ):
        return error_response(400, NUL_IN_URL)(environ, start_response)
    if environ.get("REQUEST_METHOD") in READ_METHODS:
        return tenant.app(environ, start_response)
    return _serve_write(registry, slug, tenant, environ, start_response)


def _serve_write(registry: Registry, slug: str, tenant: ServedTenant, environ, start_response):
    """A write: under the tenant's write gate, held shared until its answer is sent (a
    backup, restore or delete takes it exclusive, and so waits for it, and refuses it),
    and through the tenant's app as its files are now: a restore that ended a moment ago
    has replaced its database."""
    held = WRITES_HELD, [("Retry-After", str(WRITES_HELD_RETRY_AFTER))]
    if tenant.writes_held:
        return error_response(503, *held)(environ, start_response)
    gate = shared_lock_if_free(registry.write_gate(slug))
    if gate is None:
        return error_response(503, *held)(environ, start_response)
    try:
        tenant = registry.lookup(slug, fresh=True)
        if tenant is None or tenant.app is None or tenant.maintenance is not None:
            os.close(gate)
            return serve_tenant(registry, slug, environ, start_response)  # as it is now
        if tenant.writes_held:
            os.close(gate)
            return error_response(503, *held)(environ, start_response)
        answer = tenant.app(environ, start_response)
    except BaseException:
        os.close(gate)
        raise
    return ClosingIterator(answer, lambda: os.close(gate))


NUL_IN_URL = "The request's path and query may not hold the NUL character (%00)."


def _query_holds_nul(environ) -> bool:
    query = environ.get("QUERY_STRING", "")
    return "%00" in query or "\x00" in query


def _health(environ, start_response, registry: Registry):
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        response = error_response(
            405, "The method is not allowed for the requested URL.", [("Allow", "GET, HEAD")]
        )
    elif registry.platform_error is not None:  # no tenant app can be built: see the log
        response = error_response(503, PLATFORM_UNAVAILABLE)
    else:
        response = Response(json.dumps({"status": "ok"}) + "\n", mimetype="application/json")
    return response(environ, start_response)


class TenantDispatcher:
    """Routes by Host (a tenant's HOSTS, at ``/``), else by the first path segment."""

    def __init__(self, registry: Registry):
        if not callable(getattr(registry, "lookup", None)):
            raise TypeError("TenantDispatcher needs a TenantRegistry")
        self.registry = registry

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH:
            return _health(environ, start_response, self.registry)
        slug = self.registry.slug_for_host(request_host(environ))
        if slug is not None:
            return serve_tenant(self.registry, slug, environ, start_response)
        slug, slash, rest = path[1:].partition("/")
        if not path.startswith("/") or not slug:
            return error_response(404, NO_SUCH_TENANT)(environ, start_response)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/" + slug
        environ["PATH_INFO"] = slash + rest
        return serve_tenant(self.registry, slug, environ, start_response)


class SingleTenantApp:
    """One tenant alone, served at ``/``, exactly as the dispatcher serves it."""

    def __init__(self, registry: Registry, slug: str):
        if not callable(getattr(registry, "lookup", None)):
            raise TypeError("SingleTenantApp needs a TenantRegistry")
        self.registry = registry
        self.slug = slug

    def __call__(self, environ, start_response):
        return serve_tenant(self.registry, self.slug, environ, start_response)
