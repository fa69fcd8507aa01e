from flask import Blueprint, Flask

from tenantry.api import TenantApi
from tenantry.endpoints.landing.resources import Landing


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("landing", __name__)
    api = TenantApi(blueprint)
    api.add_resource(Landing, "/")
    return blueprint
