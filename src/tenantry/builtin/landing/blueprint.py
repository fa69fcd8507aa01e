"""The landing module's route: the tenant's root."""

from flask import Blueprint

from tenantry.builtin.landing.resources import Landing
from tenantry.endpoint import TenantApi

blueprint = Blueprint("landing", __name__)
api = TenantApi(blueprint)
api.add_resource(Landing, "/")
