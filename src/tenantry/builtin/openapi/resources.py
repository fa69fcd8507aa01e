"""The tenant's OpenAPI document, built from the routes its modules serve."""

from flask import current_app, request

from tenantry.endpoint import TenantResource
from tenantry.web.openapi import build_spec, operation


class OpenApiDocument(TenantResource):
    openapi = {
        "get": operation("This tenant's OpenAPI document", {200: {"type": "object"}}, public=True)
    }

    def get(self):
        return build_spec(current_app, request.script_root)
