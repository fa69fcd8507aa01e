from flask import Blueprint, Flask

from tenantry.api import TenantApi
from tenantry.endpoints.openapi.resources import OpenApiDocument


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("openapi", __name__)
    TenantApi(blueprint).add_resource(OpenApiDocument, "/openapi.json")
    return blueprint
