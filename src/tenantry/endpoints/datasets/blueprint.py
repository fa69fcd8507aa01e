from flask import Blueprint, Flask

from tenantry.api import TenantApi
from tenantry.endpoints.datasets.resources import DatasetDownload, DatasetItem, DatasetList


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("datasets", __name__)
    api = TenantApi(blueprint)
    kwargs = {
        "database": app.extensions["tenantry.db"],
        "storage": app.extensions["tenantry.storage"],
    }
    api.add_resource(DatasetList, "/api/datasets", resource_class_kwargs=kwargs)
    api.add_resource(DatasetDownload, "/api/datasets/download", resource_class_kwargs=kwargs)
    api.add_resource(DatasetItem, "/api/datasets/<name>", resource_class_kwargs=kwargs)
    return blueprint
