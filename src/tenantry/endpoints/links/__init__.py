"""One-time links (``/cached-file``): present in every tenant with files or datasets."""

from tenantry.endpoints.links.blueprint import blueprint

__all__ = ["blueprint"]
