from flask import Blueprint

from tenantry.endpoint import TenantApi
from tenantry.endpoints.files.resources import FileInfo, FileItem, FileLink, FileList

blueprint = Blueprint("files", __name__)
api = TenantApi(blueprint)
api.add_resource(FileList, "/files")
api.add_resource(FileItem, "/files/<name>")
api.add_resource(FileInfo, "/files/<name>/info")
api.add_resource(FileLink, "/files/<name>/link")
