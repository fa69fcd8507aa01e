from flask import Blueprint, Flask

from tenantry.api import TenantApi
from tenantry.endpoints.status.resources import Status


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("status", __name__)
    api = TenantApi(blueprint)
    api.add_resource(Status, "/status")
    return blueprint
