"""The auth module's routes: login, refresh, logout, users, the audit log and the jobs."""

from flask import Blueprint

from tenantry.builtin.auth.resources import (
    AuditLog,
    JobItem,
    JobList,
    Login,
    Logout,
    Me,
    Refresh,
    UserByName,
    Users,
)
from tenantry.endpoint import TenantApi

blueprint = Blueprint("auth", __name__)
api = TenantApi(blueprint)
api.add_resource(Login, "/auth/login")
api.add_resource(Refresh, "/auth/refresh")
api.add_resource(Me, "/auth/me")
api.add_resource(Logout, "/auth/logout")
api.add_resource(Users, "/users")
api.add_resource(UserByName, "/users/<string:username>")
api.add_resource(AuditLog, "/audit")
api.add_resource(JobList, "/jobs")
api.add_resource(JobItem, "/jobs/<string:job_id>")
