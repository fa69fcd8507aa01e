"""The openapi endpoint module."""

from tenantry.endpoints.openapi.blueprint import blueprint

__all__ = ["blueprint"]
