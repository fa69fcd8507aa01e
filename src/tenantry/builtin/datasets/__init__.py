"""The datasets endpoint module: a catalogue over the tenant's stored files."""

from tenantry.builtin.datasets.blueprint import blueprint, converters
from tenantry.builtin.datasets.models import file_references, stats

requires = ("links",)

__all__ = ["blueprint", "converters", "file_references", "requires", "stats"]
