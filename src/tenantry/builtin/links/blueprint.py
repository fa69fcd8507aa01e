"""The links module's route: where a one-time link is redeemed."""

from flask import Blueprint

from tenantry.builtin.links.resources import CachedFile
from tenantry.endpoint import TenantApi

# The route keeps its documented name: /cached-file serves a one-time link.
blueprint = Blueprint("links", __name__)
api = TenantApi(blueprint)
api.add_resource(CachedFile, "/cached-file")
