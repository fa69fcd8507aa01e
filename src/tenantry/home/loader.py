"""Running a tenant's config module, ``config/<slug>.py``, to get its config class."""

from __future__ import annotations

import types
from pathlib import Path

from tenantry.config import TenantConfig, TenantConfigError
from tenantry.home.layout import TenantHome


def load_config_class(home: TenantHome, slug: str) -> type[TenantConfig]:
    """Execute ``config/<slug>.py`` afresh and return its TenantConfig subclass.

    :raises TenantConfigError: the module is missing, fails to run, or does not hold
        exactly one TenantConfig subclass whose SLUG is ``slug``.
    """
    return load_config_file(home.config_file(slug), slug)


def load_config_file(path: Path, slug: str) -> type[TenantConfig]:
    """Execute the config module at ``path`` (a tenant's, or one being restored) and
    return its TenantConfig subclass whose SLUG is ``slug``.

    :raises TenantConfigError: as :func:`load_config_class`.
    """
    module_name = "tenantry_tenant_config_" + slug.replace("-", "_")
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    try:
        source = path.read_bytes()
    except OSError:
        raise TenantConfigError(slug, [f"config/{slug}.py does not exist"]) from None
    try:
        # Compiled from source, not imported: no __pycache__ is written into the home
        # (a read-only command must not write), and the module is tiny.
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102
    except Exception as exc:
        raise TenantConfigError(
            slug, [f"config/{slug}.py failed to load: {type(exc).__name__}: {exc}"]
        ) from exc
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, TenantConfig)
        and value.__module__ == module_name
        and getattr(value, "SLUG", None) == slug
    ]
    if len(classes) != 1:
        found = "none" if not classes else f"{len(classes)}"
        raise TenantConfigError(
            slug,
            [
                f"config/{slug}.py must define one TenantConfig subclass with "
                f"SLUG = {slug!r} (found {found})"
            ],
        )
    return classes[0]
