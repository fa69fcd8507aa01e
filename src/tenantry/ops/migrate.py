"""Bringing tenants' databases to the current revisions, many tenants in parallel."""

from __future__ import annotations

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from tenantry.config import TenantConfig, TenantConfigError
from tenantry.data.db import TenantDatabase, tenant_database
from tenantry.home.env import read_secrets
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.home.settings import (
    tenant_modules,
    tenant_settings,
)
from tenantry.modules.loader import EndpointModule
from tenantry.ops.hold import require_tenant
from tenantry.storage.objects import tenant_storage
from tenantry.web.tenant import Tenant

# `migrate` of many tenants runs in this many processes, a chunk of tenants at a time.
MIGRATE_WORKERS = 4
PARALLEL_MIGRATION_THRESHOLD = 8
MAX_CHUNK = 16


def migrate_tenants(home: TenantHome, slugs: list[str] | None = None) -> dict[str, str]:
    """Bring the named tenants' databases (default: all) to the current schema. One
    tenant's failure does not stop the others.

    :returns: each slug's schema revision afterwards, or ``"failed: <reason>"``.
    :raises UnknownTenant: a named slug is not configured.
    """
    for slug in slugs or ():
        require_tenant(home, slug)

    targets = slugs or home.slugs()
    if len(targets) < PARALLEL_MIGRATION_THRESHOLD:
        return {slug: _upgrade_or_reason(home, slug) for slug in targets}
    # Alembic keeps its migration context in module globals, so migrations run in parallel
    # in processes, not threads. Each holds two connections (its lock and its work).
    workers = min(MIGRATE_WORKERS, len(targets))
    chunks = max(1, min(MAX_CHUNK, len(targets) // (workers * 4)))
    spawn = multiprocessing.get_context("spawn")
    results = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
        revisions = pool.map(_upgrade_or_reason, itertools.repeat(home), targets, chunksize=chunks)
        try:
            for slug, revision in zip(targets, revisions, strict=False):
                results[slug] = revision
        except BrokenProcessPool:
            pass  # a migration process died (killed?): the tenants not reported failed
    for slug in targets:
        results.setdefault(slug, "failed: its migration process died; run migrate again")
    return results


def _upgrade_or_reason(home: TenantHome, slug: str) -> str:
    try:
        return upgrade_database(home, slug)
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"


def upgrade_database(
    home: TenantHome,
    slug: str,
    modules: tuple[EndpointModule, ...] | None = None,
    config_class: type[TenantConfig] | None = None,
) -> str:
    """Migrate one tenant's database to the current schema, with the tables of its
    endpoint modules (default: those its config names), seeding the tables it makes;
    returns its revision. ``config_class`` stands for the tenant's (``create`` has not
    written it yet).

    :raises TenantConfigError: its config cannot name its modules (the platform's schema
        is migrated all the same).
    """
    database = tenant_database(home, slug)
    try:
        try:
            config_class = config_class or load_config_class(home, slug)
            if modules is None:
                modules = tenant_modules(config_class)
            # Only a seed needs the tenant's settings (and so valid secrets).
            seeds = any(module.seed is not None for module in modules)
            tenant = _seeding_tenant(home, config_class, modules, database) if seeds else None
        except TenantConfigError:
            database.upgrade()
            raise
        return database.upgrade(modules, tenant)
    finally:
        database.dispose()


def _seeding_tenant(
    home: TenantHome,
    config_class: type[TenantConfig],
    modules: tuple[EndpointModule, ...],
    database: TenantDatabase,
) -> Tenant:
    """The tenant as an endpoint module's ``seed`` sees it outside a request."""
    slug = config_class.SLUG
    settings = tenant_settings(config_class, read_secrets(home, slug), home.instance_dir(slug))
    return Tenant(
        slug=slug,
        name=settings["NAME"],
        config=settings,
        database=database,
        storage=tenant_storage(settings["STORAGE_ROOT"], slug),
        modules=tuple(module.key for module in modules),
    )
