"""The files endpoint module: a tenant's stored files, and one-time links to them."""

from tenantry.endpoints.files.blueprint import blueprint
from tenantry.endpoints.files.models import sweep

requires = ("links",)

__all__ = ["blueprint", "requires", "sweep"]
