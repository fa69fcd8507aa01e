"""The rules a tenant's settings must meet, and the mapping a tenant app is built from.

A tenant is configured in two places: its class in ``config/<slug>.py`` (committed, no
secrets) and its ``tenants/<slug>/.env`` (never committed). :func:`tenant_settings` merges
the two into the mapping a tenant app is built from, or raises
:class:`~tenantry.config.TenantConfigError` listing every problem at once."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

from tenantry.config import (
    KNOWN_DEFAULT_SECRETS,
    MIN_SECRET_BYTES,
    MIN_SECRET_DISTINCT_CHARS,
    TenantConfig,
    TenantConfigError,
)
from tenantry.jobs.schedules import Schedule, tenant_schedules
from tenantry.modules.loader import (
    EndpointModule,
    EndpointModuleError,
    canonical_blueprints,
    module_problems,
    resolve_modules,
)


def secret_key_problems(secret_key: str | None) -> list[str]:
    """Everything wrong with a SECRET_KEY value (empty when it is fit to sign tokens)."""
    if not secret_key:
        return ["SECRET_KEY is missing from .env"]
    problems = []
    if len(secret_key.encode()) < MIN_SECRET_BYTES:
        problems.append(f"SECRET_KEY is shorter than {MIN_SECRET_BYTES} bytes")
    if (
        secret_key.strip().lower() in KNOWN_DEFAULT_SECRETS
        or len(set(secret_key)) < MIN_SECRET_DISTINCT_CHARS
    ):
        problems.append("SECRET_KEY is a well-known default or too repetitive")
    return problems


def config_class_problems(config_class: type[TenantConfig], slug: str) -> list[str]:
    """Everything wrong with a tenant's config class, checked without building anything."""
    problems = []
    if slug != config_class.SLUG:
        problems.append(f"SLUG is {config_class.SLUG!r}, expected {slug!r}")
    if not isinstance(config_class.NAME, str):
        problems.append("NAME must be a string")
    if not isinstance(config_class.HOSTS, tuple | list) or not all(
        isinstance(host, str) and host for host in config_class.HOSTS
    ):
        problems.append("HOSTS must be a tuple of host names")
    blueprints = config_class.BLUEPRINTS
    if not isinstance(blueprints, tuple | list):
        problems.append("BLUEPRINTS must be a tuple of blueprint names")
    else:
        problems += module_problems(blueprints)
    limits = (
        "MAX_CONTENT_LENGTH",
        "MAX_JSON_BODY",
        "MAX_CONCURRENT_REQUESTS",
        "STORAGE_QUOTA",
        "LOGIN_MAX_FAILURES",
        "MAX_RUNNING_JOBS",
        "MAX_QUEUED_JOBS",
        "JOBS_KEEP_DAYS",
        "BACKUP_KEEP",
    )
    for limit in limits:
        value = getattr(config_class, limit)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            problems.append(f"{limit} must be a positive integer")
    if config_class.RATE_LIMIT is not None and not _is_rate(config_class.RATE_LIMIT):
        problems.append('RATE_LIMIT must be None or a rate such as "600/minute"')
    for lifespan in ("JWT_ACCESS_LIFESPAN", "JWT_REFRESH_LIFESPAN", "LOGIN_LOCKOUT"):
        value = getattr(config_class, lifespan)
        if not isinstance(value, timedelta) or value <= timedelta(0):
            problems.append(f"{lifespan} must be a positive timedelta")
    every = config_class.BACKUP_EVERY
    if every is not None and (
        not isinstance(every, int) or isinstance(every, bool) or every < MIN_BACKUP_EVERY
    ):
        problems.append(
            f"BACKUP_EVERY must be None or a whole number of seconds >= {MIN_BACKUP_EVERY}"
        )
    if not isinstance(config_class.OPENAPI_STRICT, bool):
        problems.append("OPENAPI_STRICT must be True or False")
    for flag in PRODUCTION_FLAGS:
        if getattr(config_class, flag) is not False:
            problems.append(
                f"{flag} must stay False: errors are JSON, never a traceback or a debugger"
            )
    return problems


# Scheduled backups hold the tenant's writes while they run: not more often than this.
MIN_BACKUP_EVERY = 60

# Flask settings a tenant may not turn on: each lets an error escape as a traceback.
PRODUCTION_FLAGS = ("DEBUG", "TESTING", "PROPAGATE_EXCEPTIONS")


def _is_rate(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_rate_limit(value)
    except ValueError:
        return False
    return True


def enabled_blueprints(config_class: type[TenantConfig]) -> tuple[str, ...]:
    """The tenant's blueprints as it names them, with the always-on ones included: the
    built-ins in their usual order, then its own modules as listed."""
    return canonical_blueprints(config_class.BLUEPRINTS)


def tenant_modules(config_class: type[TenantConfig]) -> tuple[EndpointModule, ...]:
    """The endpoint modules of the tenant, required and always-present ones included.

    :raises TenantConfigError: a module cannot be found, imported or used.
    """
    try:
        return resolve_modules(enabled_blueprints(config_class))
    except EndpointModuleError as exc:
        raise TenantConfigError(config_class.SLUG, [str(exc)]) from exc


def module_settings(
    config_class: type[TenantConfig],
    modules: tuple[EndpointModule, ...],
    secrets: dict[str, str | None] | None = None,
) -> tuple[dict, list[str]]:
    """The settings the tenant's modules declare, with the tenant's own values where its
    config class (or, for text settings, its .env) sets them; and the problems (a value of
    another type than the default's, two modules disagreeing on a default).

    Each tenant gets its own copy of a default: a list one tenant changes stays its own.
    """
    values: dict = {}
    problems = []
    owners: dict[str, str] = {}
    for module in modules:
        for key, default in module.settings.items():
            if key in owners and values[key] != default:
                problems.append(
                    f"setting {key} has different defaults in {owners[key]} and {module.name}"
                )
                continue
            owners[key] = module.name
            values[key] = copy.deepcopy(default)
    for key, default in list(values.items()):
        if not hasattr(config_class, key):
            continue
        value = getattr(config_class, key)
        if not _same_kind(value, default):
            problems.append(
                f"{key} must be {type(default).__name__} like its default "
                f"({default!r}, from {owners[key]}), not {type(value).__name__}"
            )
        values[key] = value
    for key in secrets or {}:
        if key in values and not isinstance(values[key], str):
            problems.append(
                f"{key} is set in .env, which holds text only: set it in the config class "
                f"(a {type(values[key]).__name__}, like its default)"
            )
    return values, problems


def _same_kind(value: object, default: object) -> bool:
    """Whether ``value`` may stand for ``default``: the same type (an int is no bool, a
    bool no int), a positive number where the default is positive."""
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, int | float) and not isinstance(default, bool):
        if not isinstance(value, type(default)):
            return False
        return value > 0 if default > 0 else True
    if default is None:
        return True
    return isinstance(value, type(default))


def tenant_settings(
    config_class: type[TenantConfig], secrets: dict[str, str | None], instance_path: Path
) -> dict:
    """The full config mapping of one tenant app: class attributes, secrets and paths.

    :raises TenantConfigError: listing every problem of the class and the secrets.
    """
    slug = config_class.SLUG
    problems = config_class_problems(config_class, slug)
    problems += secret_key_problems(secrets.get("SECRET_KEY"))
    base_keys = {key for key in dir(TenantConfig) if key.isupper()} - {"SECRET_KEY"}
    misplaced = sorted(key for key in secrets if key in base_keys)
    if misplaced:
        verb = "belongs" if len(misplaced) == 1 else "belong"
        problems.append(f"{', '.join(misplaced)} {verb} in config/{slug}.py, not in .env")
    defaults: dict = {}
    if not problems:
        modules = tenant_modules(config_class)
        defaults, setting_problems = module_settings(config_class, modules, secrets)
        problems += setting_problems
        problems += schedules_of(config_class, modules)[1]
    if problems:
        raise TenantConfigError(slug, problems)

    settings = dict(defaults)
    settings.update({key: getattr(config_class, key) for key in dir(config_class) if key.isupper()})
    settings.update({key: value for key, value in secrets.items() if key.isupper()})
    settings.update(
        NAME=config_class.NAME or slug,
        HOSTS=tuple(config_class.HOSTS),
        BLUEPRINTS=enabled_blueprints(config_class),
        INSTANCE_PATH=str(instance_path),
        STORAGE_ROOT=str(instance_path / "storage"),
        SESSION_COOKIE_NAME=f"tenantry-{slug}",
    )
    return settings


def schedules_of(
    config_class: type[TenantConfig], modules: tuple[EndpointModule, ...]
) -> tuple[tuple[Schedule, ...], list[str]]:
    """The tenant's schedules (its modules', as its ``SCHEDULES`` changes them) and what is
    wrong with ``SCHEDULES``."""
    declared = tuple(schedule for module in modules for schedule in module.schedules)
    return tenant_schedules(declared, config_class.SCHEDULES)


def parse_rate_limit(value: str):
    """The ``limits`` item of a RATE_LIMIT such as ``"600/minute"``.

    :raises ValueError: not a rate limit.
    """
    # lazy: the limits library loads only for a tenant with a RATE_LIMIT
    from limits import parse

    return parse(value)
