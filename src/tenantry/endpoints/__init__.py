"""Tenant endpoint modules, each ``<name>/blueprint.py`` exposing ``create_blueprint(app)``."""

from __future__ import annotations

import importlib

from flask import Blueprint, Flask

# Endpoint modules that exist because a named blueprint is enabled, not by name themselves.
IMPLIED_MODULES = {"cached_file": ("files", "datasets")}
ALWAYS_MODULES = ("openapi",)


def endpoint_modules(blueprints: tuple[str, ...]) -> list[str]:
    """The endpoint modules a tenant with these enabled blueprints has."""
    implied = [
        module
        for module, wanted_by in IMPLIED_MODULES.items()
        if any(name in blueprints for name in wanted_by)
    ]
    return [*blueprints, *implied, *ALWAYS_MODULES]


def create_blueprint(name: str, app: Flask) -> Blueprint:
    """Build the named endpoint module's blueprint for ``app`` (fresh per app)."""
    module = importlib.import_module(f"tenantry.endpoints.{name}.blueprint")
    return module.create_blueprint(app)
