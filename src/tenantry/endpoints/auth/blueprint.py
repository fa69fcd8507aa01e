from flask import Blueprint, Flask

from tenantry.api import TenantApi
from tenantry.endpoints.auth.resources import Login, Logout, Me, Refresh, Users


def create_blueprint(app: Flask) -> Blueprint:
    blueprint = Blueprint("auth", __name__)
    api = TenantApi(blueprint)
    database = {"database": app.extensions["tenantry.db"]}
    api.add_resource(Login, "/auth/login", resource_class_kwargs=database)
    api.add_resource(Refresh, "/auth/refresh")
    api.add_resource(Me, "/auth/me")
    api.add_resource(Logout, "/auth/logout", resource_class_kwargs=database)
    api.add_resource(Users, "/users", resource_class_kwargs=database)
    return blueprint
