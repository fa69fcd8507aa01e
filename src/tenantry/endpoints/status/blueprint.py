from flask import Blueprint

from tenantry.endpoint import TenantApi
from tenantry.endpoints.status.resources import Status

blueprint = Blueprint("status", __name__)
api = TenantApi(blueprint)
api.add_resource(Status, "/status")
