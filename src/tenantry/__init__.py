"""tenantry: a multi-tenant application factory for Flask."""

__version__ = "0.1.0"
