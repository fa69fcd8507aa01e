"""The server's own settings, read from the environment and checked before it starts, so
that a wrong value stops ``tenantry serve`` (and every worker) naming the variable."""

from __future__ import annotations

import os
import re

from tenantry.server.log import level_from_environ
from tenantry.server.registry import DEFAULT_MAX_LOADED_APPS, DEFAULT_SWEEP_INTERVAL
from tenantry.storage.location import STORAGE_URL_ENV_VAR, storage_location_from_environ

TRUSTED_PROXIES_ENV_VAR = "TENANTRY_TRUSTED_PROXIES"
# The admin address (`tenantry serve --admin-bind`): the platform API and the console.
ADMIN_BIND_ENV_VAR = "TENANTRY_ADMIN_BIND"


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
    # lazy: /healthz answers before the object-store code loads
    from tenantry.storage.errors import NoSuchObject, ObjectStoreError
    from tenantry.storage.s3 import object_store

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
