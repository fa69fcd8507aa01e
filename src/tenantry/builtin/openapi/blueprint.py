"""The openapi module's route: ``/openapi.json``."""

from flask import Blueprint

from tenantry.builtin.openapi.resources import OpenApiDocument
from tenantry.endpoint import TenantApi

blueprint = Blueprint("openapi", __name__)
TenantApi(blueprint).add_resource(OpenApiDocument, "/openapi.json")
