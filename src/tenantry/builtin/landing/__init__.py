"""The landing endpoint module."""

from tenantry.builtin.landing.blueprint import blueprint

__all__ = ["blueprint"]
