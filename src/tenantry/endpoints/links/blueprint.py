from flask import Blueprint

from tenantry.endpoint import TenantApi
from tenantry.endpoints.links.resources import CachedFile

# The route keeps its contract name: /cached-file serves a one-time link.
blueprint = Blueprint("links", __name__)
api = TenantApi(blueprint)
api.add_resource(CachedFile, "/cached-file")
