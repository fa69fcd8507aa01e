from flask import Blueprint, Flask

from tenantry.api import TenantApi, storage_kwargs
from tenantry.endpoints.files.resources import FileInfo, FileItem, FileLink, FileList


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("files", __name__)
    api = TenantApi(blueprint)
    kwargs = storage_kwargs(app)
    api.add_resource(FileList, "/files", resource_class_kwargs=kwargs)
    api.add_resource(FileItem, "/files/<name>", resource_class_kwargs=kwargs)
    api.add_resource(FileInfo, "/files/<name>/info", resource_class_kwargs=kwargs)
    api.add_resource(FileLink, "/files/<name>/link", resource_class_kwargs=kwargs)
    return blueprint
