"""The datasets endpoint module: a catalogue over the tenant's stored files."""

from tenantry.endpoints.datasets.blueprint import blueprint, converters
from tenantry.endpoints.datasets.models import file_references

requires = ("links",)

__all__ = ["blueprint", "converters", "file_references", "requires"]
