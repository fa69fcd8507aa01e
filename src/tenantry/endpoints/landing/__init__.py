"""The landing endpoint module."""

from tenantry.endpoints.landing.blueprint import blueprint

__all__ = ["blueprint"]
