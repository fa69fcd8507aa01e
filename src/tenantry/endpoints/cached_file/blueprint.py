from flask import Blueprint, Flask

from tenantry.api import TenantApi
from tenantry.endpoints.cached_file.resources import CachedFile


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("cached_file", __name__)
    api = TenantApi(blueprint)
    api.add_resource(CachedFile, "/cached-file")
    return blueprint
