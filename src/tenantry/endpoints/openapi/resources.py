from flask import request
from flask_restful import Resource

from tenantry.openapi import build_spec, operation


class OpenApiDocument(Resource):
    openapi = {
        "get": operation("This tenant's OpenAPI document", {200: {"type": "object"}}, public=True)
    }

    def __init__(self, app):
        self.app = app

    def get(self):
        return build_spec(self.app, request.script_root)
