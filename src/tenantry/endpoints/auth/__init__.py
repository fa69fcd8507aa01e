"""The auth endpoint module."""

from tenantry.endpoints.auth.blueprint import blueprint

__all__ = ["blueprint"]
