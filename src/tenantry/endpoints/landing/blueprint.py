from flask import Blueprint

from tenantry.endpoint import TenantApi
from tenantry.endpoints.landing.resources import Landing

blueprint = Blueprint("landing", __name__)
api = TenantApi(blueprint)
api.add_resource(Landing, "/")
