"""The status endpoint module."""

from tenantry.builtin.status.blueprint import blueprint

__all__ = ["blueprint"]
