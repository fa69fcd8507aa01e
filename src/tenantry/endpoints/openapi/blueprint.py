from flask import Blueprint

from tenantry.endpoint import TenantApi
from tenantry.endpoints.openapi.resources import OpenApiDocument

blueprint = Blueprint("openapi", __name__)
TenantApi(blueprint).add_resource(OpenApiDocument, "/openapi.json")
