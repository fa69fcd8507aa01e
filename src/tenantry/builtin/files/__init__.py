"""The files endpoint module: a tenant's stored files, and one-time links to them."""

from tenantry.builtin.files.blueprint import blueprint
from tenantry.builtin.files.models import check_row, stats, sweep

requires = ("links",)

__all__ = ["blueprint", "check_row", "requires", "stats", "sweep"]
