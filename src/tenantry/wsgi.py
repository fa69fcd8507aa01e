"""WSGI entrypoints.

- ``tenantry.wsgi:application`` serves every tenant of TENANTRY_HOME behind the dispatcher.
- ``tenants/<slug>/wsgi.py`` calls :func:`tenant_application` to serve that tenant alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from tenantry.dispatch import SingleTenantApp, TenantDispatcher
from tenantry.home import TenantHome
from tenantry.log import RequestLog, configure_logging
from tenantry.registry import DEFAULT_MAX_LOADED_APPS, DEFAULT_SWEEP_INTERVAL, TenantRegistry


def _registry(home: TenantHome) -> TenantRegistry:
    configure_logging(os.environ.get("TENANTRY_LOG_LEVEL", "INFO"))
    max_loaded = int(os.environ.get("TENANTRY_MAX_LOADED_APPS", DEFAULT_MAX_LOADED_APPS))
    sweep = float(os.environ.get("TENANTRY_SWEEP_INTERVAL", DEFAULT_SWEEP_INTERVAL))
    return TenantRegistry(home, max_loaded=max_loaded, sweep_interval=sweep)


def dispatcher_application(home: TenantHome | None = None):
    """The WSGI app serving every tenant of ``home`` (default: from the environment)."""
    return RequestLog(TenantDispatcher(_registry(home or TenantHome.from_environ())))


def tenant_application(instance_dir: str | os.PathLike[str]):
    """The WSGI app serving the tenant whose instance folder is ``instance_dir`` alone.

    Its home is the folder two levels up (``<home>/tenants/<slug>``), whatever
    TENANTRY_HOME says: a tenant's own entrypoint always serves that tenant.
    """
    instance_dir = Path(instance_dir).resolve()
    home = TenantHome.from_environ(root=instance_dir.parent.parent)
    return RequestLog(SingleTenantApp(_registry(home), instance_dir.name))


def __getattr__(name: str):
    # Built on first access, so importing this module has no side effects.
    if name == "application":
        app = dispatcher_application()
        globals()["application"] = app
        return app
    raise AttributeError(name)
