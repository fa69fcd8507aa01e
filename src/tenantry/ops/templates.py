"""The files the platform writes for a tenant: its config module and its standalone
``wsgi.py``, with the helpers that write Python literals into them."""

from __future__ import annotations

import json

WSGI_MODULE = '''"""Tenant {slug} alone, at /: gunicorn --chdir tenants/{slug} wsgi:application"""

from pathlib import Path

from tenantry.wsgi import tenant_application

application = tenant_application(Path(__file__).resolve().parent)
'''

CONFIG_MODULE = """from tenantry.config import TenantConfig


class {class_name}(TenantConfig):
    SLUG = {slug}
    NAME = {name}
    HOSTS = {hosts}
    BLUEPRINTS = {blueprints}
"""


def is_text(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8 (undecodable command-line bytes do not)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def python_literal(value: str | tuple[str, ...]) -> str:
    """Python source for a string or a tuple of strings, in the project's quote style."""
    if isinstance(value, str):
        return json.dumps(value)
    items = ", ".join(json.dumps(item) for item in value)
    return f"({items},)" if len(value) == 1 else f"({items})"


def class_name(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("-")) + "Config"
