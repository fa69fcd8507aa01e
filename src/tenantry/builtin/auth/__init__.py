"""The auth endpoint module."""

from tenantry.builtin.auth.blueprint import blueprint

__all__ = ["blueprint"]
