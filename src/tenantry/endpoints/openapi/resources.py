from flask import request

from tenantry.api import TenantResource
from tenantry.openapi import build_spec, operation


class OpenApiDocument(TenantResource):
    openapi = {
        "get": operation("This tenant's OpenAPI document", {200: {"type": "object"}}, public=True)
    }

    def get(self):
        return build_spec(self.app, request.script_root)
