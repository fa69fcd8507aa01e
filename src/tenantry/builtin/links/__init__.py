"""One-time links (``/cached-file``): present in every tenant with files or datasets."""

from tenantry.builtin.links.blueprint import blueprint
from tenantry.builtin.links.models import sweep

__all__ = ["blueprint", "sweep"]
