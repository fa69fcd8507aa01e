"""One-time links (``/cached-file``): present in every tenant with files or datasets."""

from tenantry.endpoints.links.blueprint import blueprint
from tenantry.endpoints.links.models import sweep

__all__ = ["blueprint", "sweep"]
