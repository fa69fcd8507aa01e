"""The auth module's resources. Tokens and users are the platform's own, so this module
(with ``openapi``) may use :mod:`tenantry.data` and :mod:`tenantry.web` directly; every
other built-in uses :mod:`tenantry.endpoint` alone."""

from flask import current_app, request
from flask_praetorian.constants import REFRESH_EXPIRATION_CLAIM
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest, Conflict, NotFound, TooManyRequests, Unauthorized

from tenantry.data.audit import ENTRY_FIELDS, entries
from tenantry.data.users import (
    USERNAME_PATTERN,
    begin_login,
    create_user,
    delete_user,
    find_user,
    is_username,
    list_users,
    log_out,
    record_login,
    record_login_failure,
    rotate_refresh,
    update_user,
)
from tenantry.endpoint import TenantResource, audit, json_object, no_content, query_number
from tenantry.web.api import query_text, query_time
from tenantry.web.auth import (
    REFRESH_SEQ_CLAIM,
    auth_required,
    authenticate,
    current_identity,
    current_user,
    forget_holders,
    hash_password,
    issue_token,
    password_matches,
    refreshed_token,
    user_errors,
)
from tenantry.web.openapi import INTEGER, STRING, STRINGS, operation, schema_object

TOKEN = schema_object({"access_token": STRING}, ("access_token",))
USER = schema_object(
    {"id": INTEGER, "username": STRING, "roles": STRINGS, "active": {"type": "boolean"}},
    ("id", "username", "roles", "active"),
)

WRONG_CREDENTIALS = "The username or password is incorrect."
REFRESH_REUSED = (
    "This token was refreshed already: refresh the newest one. Every token of this user is "
    "now revoked; log in again."
)


class Credentials(BaseModel):
    username: str
    password: str


class Login(TenantResource):
    openapi = {
        "post": operation(
            "Exchange a username and password for an access token",
            {200: TOKEN},
            errors=(400, 401, 413, 429),
            body=Credentials,
            public=True,
        )
    }

    def post(self):
        credentials = json_object(Credentials)
        username, password = credentials.username, credentials.password
        if not is_username(username):
            # No such user can exist: answer like any wrong login, and store nothing.
            password_matches(None, password)
            raise Unauthorized(WRONG_CREDENTIALS)
        config = current_app.config
        limits = (config["LOGIN_MAX_FAILURES"], config["LOGIN_LOCKOUT"].total_seconds())
        retry_after = begin_login(self.database, username, *limits)
        if retry_after:
            raise TooManyRequests(
                "Too many failed logins for this user; try again later.",
                retry_after=retry_after,
            )
        user = find_user(self.database, username)
        if not password_matches(user, password):
            record_login_failure(self.database, username, *limits)
            raise Unauthorized(WRONG_CREDENTIALS)
        token = issue_token(user)
        record_login(self.database, username)
        return {"access_token": token}


class Refresh(TenantResource):
    openapi = {
        "post": operation(
            "A new access token for a current token, or an expired one within its refresh lifespan",
            {200: TOKEN},
        )
    }

    def post(self):
        identity = authenticate(for_refresh=True)
        claims = identity.claims
        latest = rotate_refresh(
            self.database,
            claims["id"],
            claims["jti"],
            claims.get(REFRESH_SEQ_CLAIM, 0),
            claims[REFRESH_EXPIRATION_CLAIM],
        )
        if not latest:
            forget_holders(
                user_id=claims["id"]
            )  # this worker sees it at once, the others within a second
            raise Unauthorized(REFRESH_REUSED)
        return {"access_token": refreshed_token(claims, identity.user)}


class Me(TenantResource):
    openapi = {
        "get": operation(
            "The token's user",
            {
                200: schema_object(
                    {"id": INTEGER, "username": STRING, "roles": STRINGS, "tenant": STRING},
                    ("id", "username", "roles", "tenant"),
                )
            },
        )
    }
    method_decorators = [auth_required()]

    def get(self):
        user = current_identity().user
        return {
            "id": user.id,
            "username": user.username,
            "roles": user.rolenames,
            "tenant": current_app.config["SLUG"],
        }


class Logout(TenantResource):
    openapi = {"post": operation("Revoke this token", {204: None})}
    method_decorators = [auth_required()]

    def post(self):
        identity = current_identity()
        claims = identity.claims
        log_out(self.database, identity.user.username, claims["jti"], claims["rf_exp"])
        forget_holders(jti=claims["jti"])
        return no_content()


class Users(TenantResource):
    openapi = {
        "get": operation(
            "All users (admin)",
            {200: schema_object({"users": {"type": "array", "items": USER}}, ("users",))},
            errors=(403,),
        ),
        "post": operation(
            "Create a user (admin)",
            {201: USER},
            errors=(400, 403, 409, 413),
            body=schema_object(
                {"username": STRING, "password": STRING, "roles": STRINGS},
                ("username", "password"),
            ),
        ),
    }
    method_decorators = [auth_required("admin")]

    def get(self):
        return {"users": [user.as_dict() for user in list_users(self.database)]}

    def post(self):
        body = json_object()
        with user_errors():
            user = create_user(
                self.database,
                hash_password,
                body.get("username"),
                body.get("password"),
                body.get("roles", ["user"]),
            )
        return user.as_dict(), 201


USER_CHANGES = ("password", "active", "roles")
USERNAME_PARAMETER = {
    "name": "username",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{USERNAME_PATTERN.pattern}$", "maxLength": 150},
}


class UserByName(TenantResource):
    openapi = {
        "patch": operation(
            "Change a user's password, active state or roles (admin)",
            {200: USER},
            errors=(400, 403, 404, 409, 413),
            body=schema_object(
                {"password": STRING, "active": {"type": "boolean"}, "roles": STRINGS}, ()
            ),
            parameters=(USERNAME_PARAMETER,),
        ),
        "delete": operation(
            "Delete a user (admin)",
            {204: None},
            errors=(403, 404, 409),
            parameters=(USERNAME_PARAMETER,),
        ),
    }
    method_decorators = [auth_required("admin")]

    def patch(self, username):
        body = json_object()
        if not body or set(body) - set(USER_CHANGES) or None in body.values():
            raise BadRequest(f"Give one or more of {', '.join(USER_CHANGES)}, and nothing else.")
        with user_errors():
            user = update_user(
                self.database,
                hash_password,
                username,
                password=body.get("password"),
                active=body.get("active"),
                roles=body.get("roles"),
            )
        forget_holders(user_id=user.id)
        return user.as_dict()

    def delete(self, username):
        with user_errors():
            user_id = delete_user(self.database, username)
        forget_holders(user_id=user_id)
        return no_content()


MAX_AUDIT_PAGE = 1000
NULLABLE_STRING = {"type": "string", "nullable": True}
AUDIT_ENTRY = schema_object(
    {
        "id": INTEGER,
        "time": STRING,
        "actor": STRING,
        "action": STRING,
        "target": STRING,
        "outcome": {"type": "string", "enum": ["success", "failure"]},
        "request_id": NULLABLE_STRING,
        "remote_addr": NULLABLE_STRING,
    },
    ENTRY_FIELDS,
)


class AuditLog(TenantResource):
    openapi = {
        "get": operation(
            "The tenant's audit log, newest first; `total` counts all matches (admin)",
            {
                200: schema_object(
                    {"data": {"type": "array", "items": AUDIT_ENTRY}, "total": INTEGER},
                    ("data", "total"),
                )
            },
            errors=(400, 403),
            parameters=(
                {"name": "action", "in": "query", "schema": STRING},
                {"name": "actor", "in": "query", "schema": STRING},
                {
                    "name": "since",
                    "in": "query",
                    "schema": {"type": "string", "format": "date-time"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_PAGE},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ),
        )
    }
    method_decorators = [auth_required("admin")]

    def get(self):
        page, total = entries(
            self.database,
            action=query_text("action"),
            actor=query_text("actor"),
            since=query_time("since"),
            limit=query_number("limit", 100, 1, MAX_AUDIT_PAGE),
            offset=query_number("offset", 0, 0, 2**31),
        )
        return {"data": page, "total": total}


JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
MAX_JOBS_PAGE = 100
TIME = {"type": "string", "format": "date-time"}
JOB = schema_object(
    {
        "id": STRING,
        "module": STRING,
        "name": STRING,
        "state": {"type": "string", "enum": list(JOB_STATES)},
        "attempt": INTEGER,
        "progress": {
            "oneOf": [
                schema_object({"done": INTEGER, "total": INTEGER}, ("done", "total")),
                {"type": "null"},
            ]
        },
        "result": {},
        "error": {"type": ["string", "null"]},
        "enqueued": TIME,
        "started": {"type": ["string", "null"], "format": "date-time"},
        "finished": {"type": ["string", "null"], "format": "date-time"},
    },
    ("id", "module", "name", "state", "attempt", "progress", "result", "error", "enqueued"),
)
NO_SUCH_JOB = "No job of this tenant has that id."


class JobList(TenantResource):
    openapi = {
        "get": operation(
            "The tenant's background jobs, newest first; `total` counts all matches (admin)",
            {
                200: schema_object(
                    {"data": {"type": "array", "items": JOB}, "total": INTEGER},
                    ("data", "total"),
                )
            },
            errors=(400, 403),
            parameters=(
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(JOB_STATES)},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_JOBS_PAGE},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ),
        )
    }
    method_decorators = [auth_required("admin")]

    def get(self):
        state = request.args.get("state")
        if state is not None and state not in JOB_STATES:
            raise BadRequest(f"state must be one of {', '.join(JOB_STATES)}.")
        page, total = self.tenant.jobs.list(
            state,
            limit=query_number("limit", 50, 1, MAX_JOBS_PAGE),
            offset=query_number("offset", 0, 0, 2**31),
        )
        return {"data": [_public(job) for job in page], "total": total}


class JobItem(TenantResource):
    openapi = {
        "get": operation(
            "One background job (an admin, or the user whose request enqueued it)",
            {200: JOB},
            errors=(404,),
        ),
        "delete": operation(
            "Cancel a job: 204 if it was queued, 202 if it runs (asked to stop), 409 if it "
            "had finished (an admin, or the user whose request enqueued it)",
            {204: None, 202: schema_object({"id": STRING, "state": STRING}, ("id", "state"))},
            errors=(404, 409),
        ),
    }
    method_decorators = [auth_required()]

    def get(self, job_id: str):
        return _public(self._visible(job_id))

    def delete(self, job_id: str):
        self._visible(job_id)
        outcome = self.tenant.jobs.cancel(job_id)
        if outcome == "finished":
            raise Conflict("The job had already finished.")
        with self.database.transaction() as session:
            audit(session, "job.cancel", job_id)
        if outcome == "stopping":
            return {"id": job_id, "state": "running"}, 202
        return no_content()

    def _visible(self, job_id: str) -> dict:
        """The job, if this user may see it; else 404, as for another tenant's job."""
        job = self.tenant.jobs.get(job_id)
        user = current_user()
        if job is None or ("admin" not in user.roles and job["enqueued_by"] != user.username):
            raise NotFound(NO_SUCH_JOB)
        return job


def _public(job: dict) -> dict:
    return {key: value for key, value in job.items() if key != "enqueued_by"}
