from flask import Blueprint, Flask

from tenantry.api import TenantApi, storage_kwargs
from tenantry.endpoints.cached_file.resources import CachedFile


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("cached_file", __name__)
    api = TenantApi(blueprint)
    api.add_resource(CachedFile, "/cached-file", resource_class_kwargs=storage_kwargs(app))
    return blueprint
