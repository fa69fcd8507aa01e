"""The status endpoint module."""

from tenantry.endpoints.status.blueprint import blueprint

__all__ = ["blueprint"]
