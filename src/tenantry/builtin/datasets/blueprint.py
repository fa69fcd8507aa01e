"""The datasets module's routes, and the URL converter its dataset names use."""

from flask import Blueprint
from werkzeug.routing import BaseConverter

from tenantry.builtin.datasets.resources import DatasetDownload, DatasetItem, DatasetList
from tenantry.endpoint import TenantApi


class DatasetNameConverter(BaseConverter):
    """A dataset name; never the reserved ``download``, so that path has one route only."""

    regex = r"(?!download\Z)[A-Za-z0-9][A-Za-z0-9._-]{0,254}"


converters = {"dataset": DatasetNameConverter}
blueprint = Blueprint("datasets", __name__)
api = TenantApi(blueprint)
api.add_resource(DatasetList, "/api/datasets")
api.add_resource(DatasetDownload, "/api/datasets/download")
api.add_resource(DatasetItem, "/api/datasets/<dataset:name>")
