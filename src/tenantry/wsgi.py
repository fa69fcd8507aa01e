"""WSGI entrypoints.

- ``tenantry.wsgi:application`` serves every tenant of TENANTRY_HOME behind the dispatcher.
- ``tenants/<slug>/wsgi.py`` calls :func:`tenant_application` to serve that tenant alone.

Behind reverse proxies, ``TENANTRY_TRUSTED_PROXIES=N`` (default 0) takes the client address,
scheme and host from the last N ``X-Forwarded-*`` hops (werkzeug's ProxyFix, the outermost
layer), so the access log and everything inside see the client, not the proxy.
"""

from __future__ import annotations

import os
from pathlib import Path

from werkzeug.middleware.proxy_fix import ProxyFix

from tenantry.dispatch import SingleTenantApp, TenantDispatcher
from tenantry.home import TenantHome
from tenantry.log import RequestLog, configure_logging
from tenantry.registry import DEFAULT_MAX_LOADED_APPS, DEFAULT_SWEEP_INTERVAL, TenantRegistry

TRUSTED_PROXIES_ENV_VAR = "TENANTRY_TRUSTED_PROXIES"


def trusted_proxies() -> int:
    """How many reverse proxies in front of the server to trust, from the environment.

    :raises ValueError: TENANTRY_TRUSTED_PROXIES is set but not a whole number >= 0.
    """
    value = os.environ.get(TRUSTED_PROXIES_ENV_VAR, "").strip()
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()):
        raise ValueError(
            f"{TRUSTED_PROXIES_ENV_VAR} must be a whole number >= 0 (how many reverse "
            f"proxies are in front of the server), not {value!r}"
        )
    return int(value)


def _behind_proxies(app, proxies: int):
    """``app`` seeing what the last ``proxies`` hops forwarded; ``app`` itself if none."""
    if proxies == 0:
        return app
    return ProxyFix(app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies, x_prefix=0)


def _registry(home: TenantHome) -> TenantRegistry:
    configure_logging(os.environ.get("TENANTRY_LOG_LEVEL", "INFO"))
    home.check_backend()  # a server on the wrong backend does not start
    max_loaded = int(os.environ.get("TENANTRY_MAX_LOADED_APPS", DEFAULT_MAX_LOADED_APPS))
    sweep = float(os.environ.get("TENANTRY_SWEEP_INTERVAL", DEFAULT_SWEEP_INTERVAL))
    return TenantRegistry(home, max_loaded=max_loaded, sweep_interval=sweep)


def dispatcher_application(home: TenantHome | None = None):
    """The WSGI app serving every tenant of ``home`` (default: from the environment)."""
    proxies = trusted_proxies()  # a wrong value stops the server before anything starts
    app = RequestLog(TenantDispatcher(_registry(home or TenantHome.from_environ())))
    return _behind_proxies(app, proxies)


def tenant_application(instance_dir: str | os.PathLike[str]):
    """The WSGI app serving the tenant whose instance folder is ``instance_dir`` alone.

    Its home is the folder two levels up (``<home>/tenants/<slug>``), whatever
    TENANTRY_HOME says: a tenant's own entrypoint always serves that tenant.
    """
    proxies = trusted_proxies()
    instance_dir = Path(instance_dir).resolve()
    home = TenantHome.from_environ(root=instance_dir.parent.parent)
    return _behind_proxies(RequestLog(SingleTenantApp(_registry(home), instance_dir.name)), proxies)


def __getattr__(name: str):
    # Built on first access, so importing this module has no side effects.
    if name == "application":
        app = dispatcher_application()
        globals()["application"] = app
        return app
    raise AttributeError(name)
