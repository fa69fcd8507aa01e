"""The files module's routes."""

from flask import Blueprint

from tenantry.builtin.files.resources import FileInfo, FileItem, FileLink, FileList
from tenantry.endpoint import TenantApi

blueprint = Blueprint("files", __name__)
api = TenantApi(blueprint)
api.add_resource(FileList, "/files")
api.add_resource(FileItem, "/files/<name>")
api.add_resource(FileInfo, "/files/<name>/info")
api.add_resource(FileLink, "/files/<name>/link")
