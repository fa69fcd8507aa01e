"""The public API for endpoint modules: everything a module needs, and nothing it must not have.

An endpoint module is a Python module (or package) with a module-level ``blueprint``; an
ordinary Flask blueprint with plain ``@blueprint.route`` views is one. Resources declare
their operations in ``openapi`` (welcome, never required), bodies as pydantic models::

    from flask import Blueprint
    from pydantic import BaseModel
    from tenantry.endpoint import TenantApi, TenantResource, auth_required, json_object, operation

    blueprint = Blueprint("notes", __name__)
    api = TenantApi(blueprint)

    class NoteIn(BaseModel):
        text: str

    class Notes(TenantResource):
        method_decorators = [auth_required()]
        openapi = {"post": operation("Write a note", {201: NoteIn}, body=NoteIn)}

        def post(self):
            note = json_object(NoteIn)  # validated, or a 400 naming the failing fields
            ...

    api.add_resource(Notes, "/notes")

It is imported once per process and shared by every tenant that enables it, so it keeps no
tenant state: each request reaches its own tenant through :data:`current_tenant` (or the
properties of :class:`TenantResource`). Optional module attributes: ``settings`` (config
defaults a tenant may override), ``migrations`` (the folder of the module's own alembic
revisions), ``requires`` (other endpoint modules it needs), ``converters`` (URL converters
its routes use), ``file_references`` (who refers to a stored file) and ``seed`` (its
tables' first rows per tenant); see docs/modules.md.

The names below are the whole API and stay stable; everything else in ``tenantry`` is
private to the platform.
"""

from __future__ import annotations

from tenantry.data.db import Base, TenantDatabase
from tenantry.jobs.api import JobQueueFull, current_job, job
from tenantry.storage.errors import InvalidName, OverQuota, TooLarge
from tenantry.storage.local import Storage, TenantStorage, validate_name
from tenantry.web.api import (
    TenantApi,
    TenantResource,
    audit,
    json_object,
    no_content,
    query_number,
    query_object,
)
from tenantry.web.auth import auth_required, current_user
from tenantry.web.errors import InsufficientStorage, error_response
from tenantry.web.openapi import INTEGER, STRING, STRINGS, operation, schema_object
from tenantry.web.tenant import Tenant, current_tenant

__all__ = [
    "INTEGER",
    "STRING",
    "STRINGS",
    "Base",
    "InsufficientStorage",
    "InvalidName",
    "JobQueueFull",
    "OverQuota",
    "Storage",
    "Tenant",
    "TenantApi",
    "TenantDatabase",
    "TenantResource",
    "TenantStorage",
    "TooLarge",
    "audit",
    "auth_required",
    "current_job",
    "current_tenant",
    "current_user",
    "error_response",
    "job",
    "json_object",
    "no_content",
    "operation",
    "query_number",
    "query_object",
    "schema_object",
    "validate_name",
]
