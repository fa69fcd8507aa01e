"""The status module's route."""

from flask import Blueprint

from tenantry.builtin.status.resources import Status
from tenantry.endpoint import TenantApi

blueprint = Blueprint("status", __name__)
api = TenantApi(blueprint)
api.add_resource(Status, "/status")
