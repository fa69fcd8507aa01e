"""``tenants check``: everything that would keep a tenant from serving, found without
serving it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass, field

from tenantry.config import TenantConfigError
from tenantry.home.env import read_secrets
from tenantry.home.hosts import HostIndex
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.home.settings import (
    tenant_modules,
    tenant_settings,
)
from tenantry.modules.checks import check_routes, undeclared_notes
from tenantry.ops.hold import require_tenant
from tenantry.support.atomic import PRIVATE_DIR, PRIVATE_FILE


@dataclass
class TenantCheck:
    """What ``tenants check`` found for one tenant: ``problems`` keep it from serving (exit
    1), ``warnings`` do not (routes its modules left undeclared, say)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_tenants(home: TenantHome, slugs: list[str] | None = None) -> dict[str, TenantCheck]:
    """What is wrong with each tenant, or worth a word.

    Secrets and hosts are compared across all tenants even when ``slugs`` names a few.

    :raises UnknownTenant: a named slug is not configured.
    """
    every_slug = home.slugs()
    for slug in slugs or ():
        require_tenant(home, slug)
    report = {slug: _check_tenant(home, slug) for slug in (slugs or every_slug)}

    holders: dict[str, list[str]] = {}
    for slug in every_slug:
        key = read_secrets(home, slug).get("SECRET_KEY")
        if key:
            holders.setdefault(hashlib.sha256(key.encode()).hexdigest(), []).append(slug)
    for sharing in holders.values():
        for slug in sharing:
            if len(sharing) > 1 and slug in report:
                others = ", ".join(other for other in sharing if other != slug)
                report[slug].problems.append(f"SECRET_KEY is shared with {others}")
    for host, claimants in hosts_in_use(home).items():
        for slug in claimants:
            if len(claimants) > 1 and slug in report:
                report[slug].problems.append(f"host {host} is also claimed by another tenant")
    return report


def _check_tenant(home: TenantHome, slug: str) -> TenantCheck:
    check = TenantCheck()
    if not home.env_file(slug).is_file():
        check.problems.append(f"tenants/{slug}/.env is missing")
    check.problems += _exposed_files(home, slug)
    try:
        config_class = load_config_class(home, slug)
        tenant_settings(config_class, read_secrets(home, slug), home.instance_dir(slug))
        routes = check_routes(tenant_modules(config_class))
    except TenantConfigError as exc:
        check.problems += exc.problems
        return check
    check.problems += routes.problems
    check.warnings += routes.warnings
    if config_class.OPENAPI_STRICT:
        check.problems += undeclared_notes(routes.undeclared, strict=True)
    else:
        check.warnings += undeclared_notes(routes.undeclared, strict=False)
    return check


# What holds secrets or tenant data: private (0600 files, 0700 folders).
PRIVATE_FILES = (".env", "tenant.db", "tenant.db-wal", "tenant.db-shm")


def _exposed_files(home: TenantHome, slug: str) -> list[str]:
    """Problems for files of the tenant's secrets or data that others may read: its
    instance folder, ``.env``, database, and everything under ``storage/``."""
    instance = home.instance_dir(slug)
    exposed = []

    def look(path, private_mode) -> None:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                exposed.append(
                    f"{os.path.relpath(path, home.root)} (mode {mode:o}, expected {private_mode:o})"
                )

    if not instance.is_dir():
        return []
    look(instance, PRIVATE_DIR)
    for name in PRIVATE_FILES:
        look(instance / name, PRIVATE_FILE)
    for folder, _folders, files in os.walk(instance / "storage"):
        look(folder, PRIVATE_DIR)
        for name in files:
            if name != ".lock":
                look(os.path.join(folder, name), PRIVATE_FILE)
    if not exposed:
        return []
    shown = "; ".join(exposed[:3]) + (f"; and {len(exposed) - 3} more" if len(exposed) > 3 else "")
    return [f"readable by others: {shown}; fix: chmod -R go-rwx {instance}"]


def hosts_in_use(home: TenantHome) -> dict[str, list[str]]:
    """Every host some tenant claims, with the tenants claiming it."""
    index = HostIndex(home, persist=False)
    index.refresh()
    return index.claims
