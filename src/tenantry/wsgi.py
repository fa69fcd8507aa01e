"""WSGI entrypoints.

- ``tenantry.wsgi:application`` serves every tenant of TENANTRY_HOME behind the dispatcher.
- ``tenants/<slug>/wsgi.py`` calls :func:`tenant_application` to serve that tenant alone.

Behind reverse proxies, ``TENANTRY_TRUSTED_PROXIES=N`` (default 0) takes the client address,
scheme and host from the last N ``X-Forwarded-*`` hops (werkzeug's ProxyFix, the outermost
layer), so the access log and everything inside see the client, not the proxy.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from werkzeug.middleware.proxy_fix import ProxyFix

from tenantry.home.layout import TenantHome
from tenantry.server.dispatch import SingleTenantApp, TenantDispatcher
from tenantry.server.log import RequestLog, configure_logging
from tenantry.server.registry import TenantRegistry
from tenantry.server.settings import server_settings


def behind_proxies(app, proxies: int | None = None):
    """``app`` seeing what the last ``proxies`` hops forwarded (default: as
    TENANTRY_TRUSTED_PROXIES says); ``app`` itself if none."""
    if proxies is None:
        proxies = server_settings()["proxies"]
    if proxies == 0:
        return app
    return ProxyFix(app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies, x_prefix=0)


# What building a tenant app imports (only then, not for /healthz): a server that lacks
# one must not start, as it did when they were imported up front.
PLATFORM_PACKAGES = ("sqlalchemy", "alembic", "flask_praetorian", "passlib", "jwt", "dotenv")


def check_installed() -> None:
    """:raises RuntimeError: naming the packages that are not installed."""
    missing = [name for name in PLATFORM_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise RuntimeError(
            f"tenantry cannot serve: {', '.join(missing)} not installed "
            "(install tenantry with its dependencies)"
        )


def _serving(home: TenantHome, app_of) -> object:
    """The WSGI app ``app_of(registry)`` returns, logged and behind trusted proxies."""
    check_installed()
    settings = server_settings()
    configure_logging(settings["log_level"])
    home.check_backend()  # a server on the wrong backend does not start
    registry = TenantRegistry(
        home, max_loaded=settings["max_loaded"], sweep_interval=settings["sweep_interval"]
    )
    return behind_proxies(RequestLog(app_of(registry)), settings["proxies"])


def dispatcher_application(home: TenantHome | None = None):
    """The WSGI app serving every tenant of ``home`` (default: from the environment)."""
    return _serving(home or TenantHome.from_environ(), TenantDispatcher)


def tenant_application(instance_dir: str | os.PathLike[str]):
    """The WSGI app serving the tenant whose instance folder is ``instance_dir`` alone.

    Its home is the folder two levels up (``<home>/tenants/<slug>``), whatever
    TENANTRY_HOME says: a tenant's own entrypoint always serves that tenant.
    """
    instance_dir = Path(instance_dir).resolve()
    home = TenantHome.from_environ(root=instance_dir.parent.parent)
    return _serving(home, lambda registry: SingleTenantApp(registry, instance_dir.name))


def __getattr__(name: str):
    # Built on first access, so importing this module has no side effects.
    if name == "application":
        app = dispatcher_application()
        globals()["application"] = app
        return app
    raise AttributeError(name)
