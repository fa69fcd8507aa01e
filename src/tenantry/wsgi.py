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
import re
from pathlib import Path

from werkzeug.middleware.proxy_fix import ProxyFix

from tenantry.dispatch import SingleTenantApp, TenantDispatcher
from tenantry.home import TenantHome
from tenantry.log import RequestLog, configure_logging, level_from_environ
from tenantry.objects import STORAGE_URL_ENV_VAR, storage_location_from_environ
from tenantry.registry import DEFAULT_MAX_LOADED_APPS, DEFAULT_SWEEP_INTERVAL, TenantRegistry

TRUSTED_PROXIES_ENV_VAR = "TENANTRY_TRUSTED_PROXIES"


def _environ_number(name: str, default, kind, minimum, meaning: str):
    """``name`` from the environment as ``kind`` (int or float) >= ``minimum``.

    :raises ValueError: naming the variable, what it means and the value given.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    pattern = _WHOLE if kind is int else _DECIMAL
    if pattern.fullmatch(value) is None or kind(value) < minimum:
        whole = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {whole} >= {minimum} ({meaning}), not {value!r}")
    return kind(value)


_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def trusted_proxies() -> int:
    """How many reverse proxies in front of the server to trust, from the environment.

    :raises ValueError: TENANTRY_TRUSTED_PROXIES is set but not a whole number >= 0.
    """
    return _environ_number(
        TRUSTED_PROXIES_ENV_VAR, 0, int, 0, "how many reverse proxies are in front of the server"
    )


def check_bucket() -> None:
    """For ``tenantry serve``: :raises ValueError: the bucket of TENANTRY_STORAGE_URL does
    not answer (a server started anyway would fail every file request). Workers do not
    ask: a store that is briefly away must not stop one from booting."""
    from tenantry.objects import NoSuchObject, ObjectStoreError, object_store

    location = storage_location_from_environ()
    if location is None:
        return
    try:
        object_store(location).head(location.tenant_prefix("-") + "probe")
    except NoSuchObject:
        pass  # the bucket answered
    except ObjectStoreError as exc:
        raise ValueError(f"{STORAGE_URL_ENV_VAR}: {exc}") from None


def server_settings() -> dict:
    """The server's settings from the environment, checked, so that a wrong value stops
    the server (and ``tenantry serve``) before it starts, naming the variable.

    :raises ValueError:
    """
    storage_location_from_environ()  # :raises ValueError: malformed
    return {
        "log_level": level_from_environ("INFO"),
        "proxies": trusted_proxies(),
        "max_loaded": _environ_number(
            "TENANTRY_MAX_LOADED_APPS", DEFAULT_MAX_LOADED_APPS, int, 1,
            "tenant apps each worker keeps built",
        ),
        "sweep_interval": _environ_number(
            "TENANTRY_SWEEP_INTERVAL", DEFAULT_SWEEP_INTERVAL, float, 0,
            "seconds between clean-ups of expired snapshots and zips; 0: never",
        ),
    }  # fmt: skip


def _behind_proxies(app, proxies: int):
    """``app`` seeing what the last ``proxies`` hops forwarded; ``app`` itself if none."""
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
    return _behind_proxies(RequestLog(app_of(registry)), settings["proxies"])


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
