"""Tenant endpoint modules, each ``<name>/blueprint.py`` exposing ``create_blueprint(app)``."""

from __future__ import annotations

import importlib

from flask import Blueprint, Flask


def create_blueprint(name: str, app: Flask) -> Blueprint:
    """Build the named endpoint module's blueprint for ``app`` (fresh per app)."""
    module = importlib.import_module(f"tenantry.endpoints.{name}.blueprint")
    return module.create_blueprint(app)
