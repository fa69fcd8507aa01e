"""A per-user notes API, as a tenantry endpoint module.

Enable it in a tenant's config (``BLUEPRINTS = ("landing", "notes")``) once this package
is installed. What tenantry reads from this module:

- ``blueprint``: the routes, shared by every tenant that enables the module;
- ``settings``: defaults a tenant's config class may override (``NOTES_MAX_PER_USER = 10``);
- ``migrations``: this module's own alembic revisions, applied to each enabling tenant's
  database (or PostgreSQL schema) on its next build and by ``tenantry migrate``;
- ``schedules``: jobs run once per period for every tenant that enables the module (a
  tenant changes one with ``SCHEDULES = {"notes.purge": {"every": 600}}``, or turns it off
  with ``None``).
"""

from pathlib import Path

from tenantry_notes.blueprint import blueprint
from tenantry_notes.jobs import purge_old_notes

settings = {
    "NOTES_MAX_PER_USER": 100,
    "NOTES_MAX_LENGTH": 2000,
    "NOTES_KEEP_DAYS": 3650,
}
migrations = Path(__file__).with_name("migrations")
schedules = {"purge": {"every": 3600, "job": purge_old_notes}}

__all__ = ["blueprint", "migrations", "schedules", "settings"]
