"""The openapi endpoint module."""

from tenantry.builtin.openapi.blueprint import blueprint

__all__ = ["blueprint"]
