"""A tenant's lifecycle as files: create, enable, disable, rotate a secret, put in maintenance.

Every write is atomic (a temp
file renamed into place), so a running server never sees half a tenant.
"""

from __future__ import annotations

import ast
import contextlib
import re
import shutil
from collections.abc import Mapping

from tenantry.config import ALL_BLUEPRINTS, TenantConfig, TenantConfigError, is_valid_slug
from tenantry.data.db import schema_name, tenant_database
from tenantry.home.env import new_secret_key, write_new_secret_key
from tenantry.home.hosts import normalised_hosts
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.home.settings import (
    config_class_problems,
    enabled_blueprints,
    module_settings,
)
from tenantry.modules.checks import check_routes, undeclared_notes
from tenantry.modules.loader import (
    SETTING_NAME,
    canonical_blueprints,
    module_problems,
    ordered_blueprints,
    resolve_modules,
)
from tenantry.ops.checks import hosts_in_use
from tenantry.ops.errors import TenantError, TenantExists
from tenantry.ops.hold import require_tenant
from tenantry.ops.migrate import upgrade_database
from tenantry.ops.record import record_action
from tenantry.ops.templates import CONFIG_MODULE, WSGI_MODULE, class_name, is_text, python_literal
from tenantry.storage.local import TenantStorage
from tenantry.support.atomic import PRIVATE_DIR, write_atomically

HOST_PATTERN = re.compile(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


# What create_tenant's settings may not name, and why.
NOT_SETTINGS = {
    "SECRET_KEY": "a secret lives in the tenant's .env, never in its config module",
    "INSTANCE_PATH": "the platform sets it from the tenant's folder",
    "STORAGE_ROOT": "the platform sets it from the tenant's folder",
    "SESSION_COOKIE_NAME": "the platform names it after the tenant",
}


def _setting_literal_problems(settings: dict, attributes: dict) -> list[str]:
    """What keeps ``settings`` from being written into a config module as they are."""
    problems = []
    for key, value in settings.items():
        if not isinstance(key, str) or not SETTING_NAME.fullmatch(key) or key in attributes:
            problems.append(
                f"setting {key!r} must be an UPPER_CASE name other than {', '.join(attributes)}"
            )
            continue
        if key in NOT_SETTINGS:
            problems.append(f"{key} is not a setting: {NOT_SETTINGS[key]}")
            continue
        try:
            same = ast.literal_eval(repr(value)) == value
        except (ValueError, SyntaxError):
            same = False
        if not same:
            problems.append(f"setting {key} must be a Python literal, not {type(value).__name__}")
    return problems


# A display name: in lists, pages and the audit log, never a paragraph.
MAX_NAME_LENGTH = 200


def create_tenant(
    home: TenantHome,
    slug: str,
    name: str | None = None,
    hosts: tuple[str, ...] = (),
    blueprints: tuple[str, ...] = ALL_BLUEPRINTS,
    settings: Mapping[str, object] | None = None,
) -> None:
    """Write config/<slug>.py, tenants/<slug>/ (.env 0600, wsgi.py, storage/) and migrate
    its database, seeding its modules' tables. The config module is written last: the
    tenant exists once it is there. ``settings`` are more attributes of its config class
    (``{"NOTES_MAX_PER_USER": 10}``; literals only), which its modules' seeds see too.

    :raises TenantExists: :raises TenantError: invalid slug, invalid host, blueprint or setting;
        nothing written.
    """
    if not is_valid_slug(slug):
        raise TenantError(
            f"invalid slug {slug!r}: use 2-63 of a-z, 0-9 and '-', starting with a letter "
            "(not 'healthz')"
        )
    if home.config_file(slug).exists() or home.instance_dir(slug).exists():
        raise TenantExists(slug)
    if name is not None and (not is_text(name) or not name.isprintable()):
        raise TenantError("the name must be valid text without control characters")
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise TenantError(f"the name must be at most {MAX_NAME_LENGTH} characters")
    hosts = normalised_hosts(hosts)
    for host in hosts:
        if not HOST_PATTERN.fullmatch(host):
            raise TenantError(f"invalid host {host!r}")
    problems = module_problems(blueprints)
    if problems:
        raise TenantError("; ".join(problems))
    blueprints = ordered_blueprints(blueprints)
    modules = resolve_modules(canonical_blueprints(blueprints))
    problems = check_routes(modules).problems
    if problems:
        raise TenantError("; ".join(problems))
    # The class config/<slug>.py will hold: checked now, seen by the modules' seeds.
    attributes = {"SLUG": slug, "NAME": name or slug, "HOSTS": hosts, "BLUEPRINTS": blueprints}
    settings = dict(settings or {})
    problems = _setting_literal_problems(settings, attributes)
    config_class = type(class_name(slug), (TenantConfig,), {**attributes, **settings})
    if not problems:
        problems = config_class_problems(config_class, slug)
        problems += module_settings(config_class, modules)[1]
    if config_class.OPENAPI_STRICT is True:
        problems += undeclared_notes(check_routes(modules).undeclared, strict=True)
    if problems:
        raise TenantError("; ".join(problems))
    taken = hosts_in_use(home).keys() & set(hosts)
    if taken:
        raise TenantError(f"host already used by another tenant: {', '.join(sorted(taken))}")
    home.check_backend()
    home.check_claim()
    if home.database_url and tenant_database(home, slug).exists():
        # A schema left behind by a removed tenant must not hand its users to a new one.
        raise TenantError(
            f"the database already holds schema {schema_name(slug)!r}, left by an earlier "
            f"tenant {slug!r}: drop it first, or choose another slug"
        )

    home.config_dir.mkdir(parents=True, exist_ok=True)
    home.tenants_dir.mkdir(parents=True, exist_ok=True)
    instance = home.instance_dir(slug)
    try:
        instance.mkdir(mode=PRIVATE_DIR)
    except FileExistsError:
        raise TenantExists(slug) from None
    try:
        write_atomically(home.env_file(slug), f"SECRET_KEY={new_secret_key()}\n", 0o600)
        write_atomically(instance / "wsgi.py", WSGI_MODULE.format(slug=slug))
        TenantStorage(instance / "storage").ensure()
        upgrade_database(home, slug, modules, config_class)
        home.record_backend()
        config = CONFIG_MODULE.format(
            class_name=class_name(slug),
            slug=python_literal(slug),
            name=python_literal(name or slug),
            hosts=python_literal(hosts),
            blueprints=python_literal(blueprints),
        )
        config += "".join(f"    {key} = {value!r}\n" for key, value in settings.items())
        write_atomically(home.config_file(slug), config)
    except BaseException:
        home.config_file(slug).unlink(missing_ok=True)
        shutil.rmtree(instance, ignore_errors=True)
        if home.database_url:  # the schema did not exist before: it is this attempt's
            with contextlib.suppress(Exception):
                tenant_database(home, slug).drop_schema()
        raise


def set_enabled(home: TenantHome, slug: str, enabled: bool) -> None:
    """Enable or disable a tenant; a disabled tenant answers 404 like an unknown one.

    :raises UnknownTenant:
    """
    require_tenant(home, slug)
    marker = home.disabled_marker(slug)
    if enabled:
        marker.unlink(missing_ok=True)
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    record_action(home, slug, "tenant.enable" if enabled else "tenant.disable")


def set_maintenance(home: TenantHome, slug: str, retry_after: int | None) -> None:
    """Take the tenant down for maintenance (every route answers 503 with ``Retry-After:
    retry_after``), or with None bring it up again. Every worker sees it within 2 s.

    :raises UnknownTenant: :raises TenantError: ``retry_after`` is not 1-86400 seconds.
    """
    require_tenant(home, slug)
    marker = home.maintenance_marker(slug)
    if retry_after is None:
        marker.unlink(missing_ok=True)
        record_action(home, slug, "tenant.up")
        return
    if isinstance(retry_after, bool) or not isinstance(retry_after, int):
        raise TenantError("retry-after must be a whole number of seconds")
    if not 1 <= retry_after <= 86400:
        raise TenantError("retry-after must be 1 to 86400 seconds")
    marker.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    write_atomically(marker, f"{retry_after}\n")
    record_action(home, slug, "tenant.down")


def rotate_secret(home: TenantHome, slug: str) -> None:
    """Give the tenant a fresh SECRET_KEY, keeping the other lines of its .env.

    :raises UnknownTenant:
    """
    require_tenant(home, slug)
    write_new_secret_key(home, slug)
    record_action(home, slug, "tenant.rotate_secret")


def describe_tenant(home: TenantHome, slug: str) -> dict:
    """slug, name, hosts, blueprints, enabled and maintenance of one tenant (plus
    ``error`` if broken)."""
    try:
        config_class = load_config_class(home, slug)
    except TenantConfigError as exc:
        return {
            "slug": slug,
            "name": None,
            "hosts": [],
            "blueprints": [],
            "enabled": home.is_enabled(slug),
            "maintenance": home.maintenance(slug) is not None,
            "error": "; ".join(exc.problems),
        }
    return {
        "slug": slug,
        "name": config_class.NAME or slug,
        "hosts": list(config_class.HOSTS),
        "blueprints": list(enabled_blueprints(config_class)),
        "enabled": home.is_enabled(slug),
        "maintenance": home.maintenance(slug) is not None,
    }
