"""The tenant a request is for: :class:`Tenant`, set up once per tenant app by the
factory, and :data:`current_tenant`, the proxy through which a module reaches it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import current_app
from werkzeug.local import LocalProxy

from tenantry.data.db import TenantDatabase
from tenantry.storage.local import Storage


class Jobs(Protocol):
    """What ``current_tenant.jobs`` offers (:class:`tenantry.jobs.api.TenantJobs`)."""

    def enqueue(
        self, function: Callable, *args: Any, key: str | None = None, delay: float | None = None
    ) -> str: ...


@dataclass(frozen=True)
class Tenant:
    """The tenant a request is for: set up once per tenant app by the factory.

    ``config`` is the tenant's settings (its config class, its modules' settings, its
    secrets); ``database`` and ``storage`` are its own, never another tenant's;
    ``modules`` names the endpoint modules it has enabled (module names, as imported);
    ``cache`` is a dict of its own for what a module keeps between requests in a worker.
    """

    slug: str
    name: str
    config: dict
    database: TenantDatabase
    storage: Storage
    modules: tuple[str, ...]
    reference_checks: tuple[Callable[[Tenant, str], list[str]], ...] = field(default=(), repr=False)
    #: The tenant's own dict for values a module keeps a short while in this process (a
    #: probe's result, say): gone with the tenant's app, never seen by another tenant.
    #: Key it by the module's name.
    cache: dict = field(default_factory=dict, repr=False, compare=False)
    #: The tenant's background jobs: ``current_tenant.jobs.enqueue(job_function, *args)``.
    jobs: Jobs | None = field(default=None, repr=False, compare=False)

    def file_references(self, name: str) -> list[str]:
        """What refers to the tenant's stored file ``name``, as its enabled modules say
        (their ``file_references(tenant, name)``, e.g. ``["dataset q3"]``); empty if nothing.
        A module that keeps file names in its tables declares it so that the file cannot
        be deleted from under it."""
        return [reference for check in self.reference_checks for reference in check(self, name)]


def serving_tenant() -> Tenant:
    return current_app.extensions["tenantry.tenant"]


#: The tenant of the request being served (a proxy, valid inside a request).
current_tenant: Tenant = LocalProxy(serving_tenant)  # type: ignore[assignment]
