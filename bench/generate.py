"""Many tenants, written cheaply: the files ``tenantry tenants create`` writes, in bulk.

``tenants create`` checks each new tenant against all the others and migrates its database
at once; for thousands of tenants in a test or a benchmark that is the slow part. Here the
files are written directly from the same templates, and the databases are left to
``tenantry migrate`` or to each tenant's first request, or copied from ``database_template``
(SQLite only) when given.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tenantry.config import ALL_BLUEPRINTS
from tenantry.home.env import new_secret_key
from tenantry.home.layout import TenantHome
from tenantry.ops.templates import CONFIG_MODULE, WSGI_MODULE, class_name, python_literal
from tenantry.storage.local import TenantStorage


def generate_tenants(
    home: TenantHome,
    count: int,
    prefix: str = "t",
    blueprints: tuple[str, ...] = ALL_BLUEPRINTS,
    database_template: Path | None = None,
) -> list[str]:
    """Write ``count`` tenants ``<prefix>00000``... into ``home``; returns their slugs."""
    home.config_dir.mkdir(parents=True, exist_ok=True)
    home.tenants_dir.mkdir(parents=True, exist_ok=True)
    slugs = [f"{prefix}{number:05d}" for number in range(count)]
    for slug in slugs:
        instance = home.instance_dir(slug)
        TenantStorage(instance / "storage").ensure(parents=True)  # as `tenants create` does
        fd = os.open(instance / ".env", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as env:
            env.write(f"SECRET_KEY={new_secret_key()}\n")
        (instance / "wsgi.py").write_text(WSGI_MODULE.format(slug=slug))
        if database_template is not None:
            shutil.copyfile(database_template, home.database_file(slug))
        home.config_file(slug).write_text(
            CONFIG_MODULE.format(
                class_name=class_name(slug),
                slug=python_literal(slug),
                name=python_literal(slug.upper()),
                hosts="()",
                blueprints=python_literal(blueprints),
            )
        )
    return slugs


def small_database_template(home: TenantHome, slug: str, target: Path) -> Path:
    """A copy of ``slug``'s migrated SQLite database with 512-byte pages (about 11 KiB
    instead of 90), for homes of thousands of generated tenants."""
    import sqlite3

    shutil.copyfile(home.database_file(slug), target)
    connection = sqlite3.connect(target)
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.execute("PRAGMA page_size=512")
    connection.execute("VACUUM")
    connection.close()
    return target
