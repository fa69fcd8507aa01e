"""The platform API on a real 2-worker gunicorn with its admin listener and its own job
runner, on both databases: operators sign in (locked out after 10 failures, their tokens
ending when they are disabled), every route does what it says and records the operator in
the tenant's audit log, a read-only operator changes nothing, a tenant created through it
is served by every worker within 2 s, the two addresses never answer for each other, and
hostile input is a 4xx in the one error shape, never a 500."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from flask import Flask

from tenantry.ops.hold import operation_lock
from tenantry.platform.actions import add_user
from tenantry.platform.api import api as api_blueprint
from tenantry.platform.operators import LOCKOUT_SECONDS, MAX_FAILURES, Operators
from tenantry.server.hooks import HOOKS_CONFIG, SERVE_JOBS_ENV_VAR
from tests.server import GunicornServer, poll_until, raw_request
from tests.test_audit import raw_sql

pytestmark = pytest.mark.e2e

OPERATOR_PASSWORD = "operator-pass-1"
USER_PASSWORD = "correct-horse-1"
ROW_FIELDS = {
    "slug",
    "name",
    "enabled",
    "maintenance",
    "blueprints",
    "hosts",
    "users",
    "bytes",
    "quota",
    "last_activity",
}
ERROR_NAME = re.compile(r"[a-z]+(_[a-z]+)*")


@pytest.fixture
def server(home, acme, globex):
    """acme (admin root) and globex (admin boss); operators ops (read-write) and viewer
    (read-only); a 2-worker server with the admin listener, running its own jobs as
    ``tenantry serve`` does."""
    add_user(home, acme, "root", USER_PASSWORD, "admin")
    add_user(home, globex, "boss", USER_PASSWORD, "admin")
    operators = Operators(home)
    operators.add("ops", OPERATOR_PASSWORD)
    operators.add("viewer", OPERATOR_PASSWORD, read_only=True)
    server = GunicornServer(home, workers=2, admin=True, env={SERVE_JOBS_ENV_VAR: "1"})
    server.argv[-1:-1] = ["--config", HOOKS_CONFIG]  # the job runner, as `tenantry serve`
    with server:
        yield server
    assert "Traceback" not in server.log()


def api_routes():
    """The URL rules of the platform API's blueprint (no admin app built here: it starts
    threads of its own)."""
    app = Flask(__name__)
    app.register_blueprint(api_blueprint)
    return app.url_map.iter_rules()


def sign_in(server, name: str, password: str = OPERATOR_PASSWORD) -> dict[str, str]:
    response = httpx.post(
        f"{server.admin_url}/api/login", json={"name": name, "password": password}
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"access_token"}
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def api(server):
    """An httpx client on the admin address, signed in as ops."""
    with httpx.Client(base_url=server.admin_url, headers=sign_in(server, "ops")) as client:
        yield client


def tenant_login(server, slug: str, username: str, password: str = USER_PASSWORD):
    return httpx.post(
        f"{server.url}/{slug}/auth/login", json={"username": username, "password": password}
    )


def tenant_token(server, slug: str, username: str, password: str = USER_PASSWORD) -> dict:
    response = tenant_login(server, slug, username, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def refused(response: httpx.Response, status: int | None = None) -> dict:
    """The response is a 4xx (``status`` if given) in the one error shape, without a
    traceback; returns its body."""
    request = f"{response.request.method} {response.request.url}"
    if status is None:
        assert 400 <= response.status_code < 500, (request, response.status_code, response.text)
    else:
        assert response.status_code == status, (request, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), request
    body = response.json()
    assert isinstance(body, dict), request
    assert {"error", "message"} <= set(body), (request, body)
    assert ERROR_NAME.fullmatch(body["error"]), (request, body)
    assert isinstance(body["message"], str) and body["message"], (request, body)
    assert "Traceback" not in response.text, request
    return body


def every_worker(url: str, status: int, headers=None) -> bool:
    """8 fresh connections (gunicorn spreads them over both workers) all answer ``status``."""
    return all(
        httpx.get(url, headers={"Connection": "close", **(headers or {})}).status_code == status
        for _ in range(8)
    )


def audit_of(api, slug: str, **query) -> list[dict]:
    response = api.get(f"/api/tenants/{slug}/audit", params={"limit": 500, **query})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_operators_sign_in_and_their_tokens_hold_on_the_admin_address_only(
    home, server, api, tenantry
):
    admin = server.admin_url
    spec = httpx.get(f"{admin}/api/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["openapi"].startswith("3.")
    assert {
        "/api/login",
        "/api/tenants",
        "/api/tenants/{slug}",
        "/api/tenants/{slug}/rotate-secret",
        "/api/tenants/{slug}/users",
        "/api/tenants/{slug}/users/{username}",
        "/api/tenants/{slug}/backups",
        "/api/tenants/{slug}/audit",
        "/api/tenants/{slug}/audit/verify",
        "/api/tenants/{slug}/jobs",
    } <= set(spec.json()["paths"])
    # every route of the API, with each of its methods, is in the document
    routes = {
        (re.sub(r"<(\w+:)?(\w+)>", r"{\2}", rule.rule), method.lower())
        for rule in api_routes()
        if rule.rule.startswith("/api/") and rule.rule != "/api/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in spec.json()["paths"].items() for method in item}
    assert routes and routes <= documented, routes - documented

    me = api.get("/api/me")
    assert me.status_code == 200
    assert me.json()["name"] == "ops"
    assert (me.json()["read_only"], me.json()["active"]) == (False, True)
    viewer = httpx.get(f"{admin}/api/me", headers=sign_in(server, "viewer"))
    assert (viewer.json()["name"], viewer.json()["read_only"]) == ("viewer", True)

    # no token, a forged one, a wrong password, an unknown name: 401
    refused(httpx.get(f"{admin}/api/me"), 401)
    refused(httpx.get(f"{admin}/api/tenants", headers={"Authorization": "Bearer a.b.c"}), 401)
    wrong = {"name": "ops", "password": "not-the-password"}
    assert refused(httpx.post(f"{admin}/api/login", json=wrong), 401)["error"] == "unauthorized"
    unknown = {"name": "nobody", "password": OPERATOR_PASSWORD}
    refused(httpx.post(f"{admin}/api/login", json=unknown), 401)

    # a tenant's token (tenants' address) is no operator's
    root = tenant_token(server, "acme", "root")
    assert httpx.get(f"{server.url}/acme/audit", headers=root).status_code == 200
    refused(httpx.get(f"{admin}/api/me", headers=root), 401)
    refused(httpx.get(f"{admin}/api/tenants", headers=root), 401)
    refused(httpx.post(f"{admin}/api/tenants/acme/backups", headers=root), 401)
    # ... and an operator's is no tenant's
    operator = {"Authorization": api.headers["Authorization"]}
    assert httpx.get(f"{server.url}/acme/audit", headers=operator).status_code == 401

    # each address answers only for itself
    assert httpx.get(f"{server.url}/acme/status").status_code == 200
    for path in ("/api/me", "/api/tenants", "/api/openapi.json"):
        response = httpx.get(f"{server.url}{path}", headers=operator)
        assert response.status_code == 404, path
        assert "data" not in response.json() and "openapi" not in response.json()
    assert httpx.post(f"{server.url}/api/login", json=unknown).status_code == 404
    refused(api.get("/acme/status"), 404)
    refused(api.get("/acme/"), 404)
    refused(api.post("/acme/auth/login", json={"username": "root", "password": USER_PASSWORD}))

    # a disabled operator's token stops working at once, and it cannot sign in
    token = sign_in(server, "viewer")
    assert httpx.get(f"{admin}/api/tenants", headers=token).status_code == 200
    assert tenantry("operators", "disable", "viewer").exit_code == 0
    refused(httpx.get(f"{admin}/api/tenants", headers=token), 401)
    refused(httpx.get(f"{admin}/api/me", headers=token), 401)
    again = {"name": "viewer", "password": OPERATOR_PASSWORD}
    refused(httpx.post(f"{admin}/api/login", json=again), 401)
    assert tenantry("operators", "enable", "viewer").exit_code == 0
    refused(httpx.get(f"{admin}/api/me", headers=token), 401)  # an old token stays ended
    assert httpx.get(f"{admin}/api/me", headers=sign_in(server, "viewer")).status_code == 200
    # a new password ends its tokens too; a deleted operator's end
    changed = tenantry("operators", "passwd", "viewer", "--password-stdin", input="new-pass-123\n")
    assert changed.exit_code == 0, changed.output
    refused(httpx.get(f"{admin}/api/me", headers=token), 401)
    token = sign_in(server, "viewer", "new-pass-123")
    assert tenantry("operators", "delete", "viewer").exit_code == 0
    refused(httpx.get(f"{admin}/api/me", headers=token), 401)

    # lock-out: MAX_FAILURES wrong passwords in a row (a sign-in starts the count again),
    # then 429 with Retry-After, even for the right password
    sign_in(server, "ops")
    for _ in range(MAX_FAILURES):
        refused(httpx.post(f"{admin}/api/login", json=wrong), 401)
    for password in ("not-the-password", OPERATOR_PASSWORD):
        locked = httpx.post(f"{admin}/api/login", json={"name": "ops", "password": password})
        assert refused(locked, 429)["error"] == "too_many_requests"
        assert 0 < int(locked.headers["Retry-After"]) <= LOCKOUT_SECONDS + 1
    # the tokens issued before stay good; the lock-out is the name's, not every operator's
    assert api.get("/api/me").status_code == 200
    Operators(home).add("other", OPERATOR_PASSWORD)
    sign_in(server, "other")


def test_tenants_and_their_users_through_the_api(home, server, api, tenantry):
    admin = server.admin_url
    listed = api.get("/api/tenants")
    assert listed.status_code == 200
    assert listed.json()["total"] == 2
    rows = {row["slug"]: row for row in listed.json()["data"]}
    assert list(rows) == ["acme", "globex"]
    assert all(set(row) == ROW_FIELDS for row in rows.values())
    assert rows["acme"]["hosts"] == ["acme.localhost"]
    assert (rows["acme"]["enabled"], rows["acme"]["maintenance"]) == (True, False)
    assert rows["acme"]["users"] == 1
    assert rows["acme"]["name"] == "Acme Corp"

    def slugs(**query) -> tuple[list[str], int]:
        response = api.get("/api/tenants", params=query)
        assert response.status_code == 200, response.text
        return [row["slug"] for row in response.json()["data"]], response.json()["total"]

    assert slugs(q="GLOB") == (["globex"], 1)
    assert slugs(q="acme.LOCALHOST") == (["acme"], 1)
    assert slugs(q="nothing-like-it") == ([], 0)
    assert slugs(limit=1) == (["acme"], 2)
    assert slugs(limit=1, offset=1) == (["globex"], 2)
    assert slugs(offset=5) == ([], 2)

    # create: served on the tenants' address by every worker within 2 s
    body = {"slug": "initech", "name": "Initech", "hosts": ["initech.localhost"]}
    created = api.post("/api/tenants", json=body)
    assert created.status_code == 201, created.text
    poll_until(lambda: every_worker(f"{server.url}/initech/status", 200), timeout=2.0)
    by_host = httpx.get(f"{server.url}/status", headers={"Host": "initech.localhost"})
    assert by_host.status_code == 200
    assert created.json()["slug"] == "initech"
    assert (created.json()["name"], created.json()["hosts"]) == ("Initech", ["initech.localhost"])
    assert created.json()["enabled"] is True
    assert home.exists("initech")
    assert refused(api.post("/api/tenants", json=body), 409)["error"] == "conflict"
    assert refused(api.post("/api/tenants", json={"slug": "acme"}), 409)["error"] == "conflict"
    for slug in ("Bad Slug", "../x", "", "-x", "a" * 200, "acme/../globex", "a\nb"):
        refused(api.post("/api/tenants", json={"slug": slug}), 400)
        assert not home.exists(slug)
    refused(api.post("/api/tenants", json={"slug": "beta", "blueprints": ["no-such-module"]}))
    assert not home.exists("beta")
    assert slugs() == (["acme", "globex", "initech"], 3)
    [entry] = audit_of(api, "initech", action="tenant.create")
    assert (entry["actor"], entry["target"]) == ("operator:ops", "initech")

    one = api.get("/api/tenants/initech")
    assert one.status_code == 200
    assert set(one.json()) >= ROW_FIELDS
    assert one.json()["hosts"] == ["initech.localhost"]
    refused(api.get("/api/tenants/nope"), 404)

    # maintenance and enabled, seen on the tenants' address
    down = api.patch("/api/tenants/acme", json={"maintenance": True, "retry_after": 42})
    assert down.status_code == 200, down.text
    assert (down.json()["maintenance"], down.json()["maintenance_retry_after"]) == (True, 42)
    poll_until(lambda: every_worker(f"{server.url}/acme/status", 503), timeout=10)
    assert httpx.get(f"{server.url}/acme/status").headers["Retry-After"] == "42"
    up = api.patch("/api/tenants/acme", json={"maintenance": False})
    assert (up.status_code, up.json()["maintenance"]) == (200, False)
    poll_until(lambda: every_worker(f"{server.url}/acme/status", 200), timeout=10)
    off = api.patch("/api/tenants/globex", json={"enabled": False})
    assert (off.status_code, off.json()["enabled"]) == (200, False)
    poll_until(lambda: every_worker(f"{server.url}/globex/status", 404), timeout=10)
    assert api.get("/api/tenants", params={"q": "globex"}).json()["data"][0]["enabled"] is False
    on = api.patch("/api/tenants/globex", json={"enabled": True})
    assert (on.status_code, on.json()["enabled"]) == (200, True)
    poll_until(lambda: every_worker(f"{server.url}/globex/status", 200), timeout=10)
    refused(api.patch("/api/tenants/nope", json={"enabled": False}), 404)

    # every worker shows a tenant's state as it is, whoever changed it (the CLI here)
    def on_every_worker(slug: str, field: str) -> set:
        headers = {"Authorization": api.headers["Authorization"], "Connection": "close"}
        return {
            httpx.get(f"{admin}/api/tenants/{slug}", headers=headers).json()[field]
            for _ in range(8)
        } | {
            row[field]
            for _ in range(8)
            for row in httpx.get(f"{admin}/api/tenants", headers=headers).json()["data"]
            if row["slug"] == slug
        }

    assert on_every_worker("acme", "maintenance") == {False}
    assert tenantry("tenants", "down", "acme").exit_code == 0
    poll_until(lambda: on_every_worker("acme", "maintenance") == {True}, timeout=10)
    assert tenantry("tenants", "up", "acme").exit_code == 0
    poll_until(lambda: on_every_worker("acme", "maintenance") == {False}, timeout=10)
    assert tenantry("tenants", "disable", "globex").exit_code == 0
    poll_until(lambda: on_every_worker("globex", "enabled") == {False}, timeout=10)
    assert tenantry("tenants", "enable", "globex").exit_code == 0
    poll_until(lambda: on_every_worker("globex", "enabled") == {True}, timeout=10)

    # a new secret: the tenant's tokens issued before end
    root = tenant_token(server, "acme", "root")
    assert httpx.get(f"{server.url}/acme/audit", headers=root).status_code == 200
    rotated = api.post("/api/tenants/acme/rotate-secret")
    assert (rotated.status_code, rotated.content) == (204, b"")
    poll_until(lambda: every_worker(f"{server.url}/acme/audit", 401, root), timeout=10)
    refused(api.post("/api/tenants/nope/rotate-secret"), 404)

    # users
    def users(slug="acme") -> dict[str, dict]:
        response = api.get(f"/api/tenants/{slug}/users")
        assert response.status_code == 200, response.text
        return {row["username"]: row for row in response.json()["data"]}

    assert users() == {"root": {"username": "root", "roles": ["admin"], "active": True}}
    alice = {"username": "alice", "password": USER_PASSWORD, "role": "user"}
    added = api.post("/api/tenants/acme/users", json=alice)
    assert added.status_code == 201, added.text
    assert added.json() == {"username": "alice", "roles": ["user"], "active": True}
    assert tenant_login(server, "acme", "alice").status_code == 200
    assert refused(api.post("/api/tenants/acme/users", json=alice), 409)["error"] == "conflict"
    refused(api.post("/api/tenants/acme/users", json={**alice, "username": "eve", "role": "god"}))
    refused(api.post("/api/tenants/acme/users", json={**alice, "username": "eve", "password": "x"}))
    assert "eve" not in users()
    refused(api.post("/api/tenants/nope/users", json=alice), 404)

    new_password = {"password": "battery-staple-2"}
    changed = api.patch("/api/tenants/acme/users/alice", json=new_password)
    assert changed.status_code == 200, changed.text
    assert tenant_login(server, "acme", "alice").status_code == 401
    assert tenant_login(server, "acme", "alice", "battery-staple-2").status_code == 200
    promoted = api.patch("/api/tenants/acme/users/alice", json={"roles": ["admin"]})
    assert (promoted.status_code, promoted.json()["roles"]) == (200, ["admin"])
    disabled = api.patch("/api/tenants/acme/users/alice", json={"active": False})
    assert (disabled.status_code, disabled.json()["active"]) == (200, False)
    assert tenant_login(server, "acme", "alice", "battery-staple-2").status_code == 401
    refused(api.patch("/api/tenants/acme/users/nobody", json={"active": False}), 404)
    refused(api.delete("/api/tenants/acme/users/nobody"), 404)

    # root is now the last active admin: it stays one
    for change in ({"active": False}, {"roles": ["user"]}):
        assert refused(api.patch("/api/tenants/acme/users/root", json=change), 409)["error"] == (
            "conflict"
        )
    refused(api.delete("/api/tenants/acme/users/root"), 409)
    assert users()["root"] == {"username": "root", "roles": ["admin"], "active": True}
    assert tenant_login(server, "acme", "root").status_code == 200

    deleted = api.delete("/api/tenants/acme/users/alice")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert set(users()) == {"root"}

    # every change, in the tenant's own log, as the operator
    mine = audit_of(api, "acme", actor="operator:ops")
    assert {entry["actor"] for entry in mine} == {"operator:ops"}
    assert [entry["action"] for entry in reversed(mine)] == [
        "tenant.down",
        "tenant.up",
        "tenant.rotate_secret",
        "user.add",
        "user.password",
        "user.roles",
        "user.disable",
        "user.delete",
    ]
    added = audit_of(api, "acme", action="user.add", actor="operator:ops")
    assert [entry["target"] for entry in added] == ["alice"]
    globex_actions = [entry["action"] for entry in audit_of(api, "globex", actor="operator:ops")]
    assert globex_actions == ["tenant.enable", "tenant.disable"]
    paged = api.get("/api/tenants/acme/audit", params={"limit": 2, "offset": 1})
    assert paged.json()["total"] == len(audit_of(api, "acme"))
    assert paged.json()["data"] == audit_of(api, "acme")[1:3]
    future = audit_of(api, "acme", since="2999-01-01T00:00:00Z")
    assert future == []

    # a delete while another operation of the tenant runs: 409, and nothing removed
    with operation_lock(home, "initech"):
        busy = api.delete("/api/tenants/initech")
    assert refused(busy, 409)["error"] == "conflict"
    assert home.exists("initech")
    assert every_worker(f"{server.url}/initech/status", 200)

    # delete: an archive in the trash, and the tenant gone from both addresses
    gone = api.delete("/api/tenants/initech")
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted"] == "initech"
    assert gone.json()["archive"] and list(home.root.rglob(gone.json()["archive"]))
    assert not home.exists("initech")
    refused(api.get("/api/tenants/initech"), 404)
    refused(api.delete("/api/tenants/initech"), 404)
    poll_until(lambda: every_worker(f"{server.url}/initech/status", 404), timeout=10)
    assert slugs() == (["acme", "globex"], 2)

    # a read-only operator: 403 on every change, and nothing changes
    viewer = sign_in(server, "viewer")
    before = audit_of(api, "acme")
    changes = [
        ("POST", "/api/tenants", {"slug": "blocked"}),
        ("PATCH", "/api/tenants/acme", {"enabled": False}),
        ("PATCH", "/api/tenants/acme", {"maintenance": True}),
        ("POST", "/api/tenants/acme/rotate-secret", None),
        ("DELETE", "/api/tenants/acme", None),
        ("POST", "/api/tenants/acme/users", {**alice, "username": "mallory"}),
        ("PATCH", "/api/tenants/acme/users/root", {"active": False}),
        ("PATCH", "/api/tenants/acme/users/root", {"password": "battery-staple-3"}),
        ("DELETE", "/api/tenants/acme/users/root", None),
        ("POST", "/api/tenants/acme/backups", None),
    ]
    for method, path, body in changes:
        response = httpx.request(method, f"{admin}{path}", json=body, headers=viewer)
        assert refused(response, 403)["error"] == "forbidden", (method, path)
    for path in ("/api/tenants", "/api/tenants/acme", "/api/tenants/acme/users"):
        assert httpx.get(f"{admin}{path}", headers=viewer).status_code == 200, path
    for path in ("/api/tenants/acme/audit", "/api/tenants/acme/jobs", "/api/me"):
        assert httpx.get(f"{admin}{path}", headers=viewer).status_code == 200, path
    assert not home.exists("blocked")
    assert home.exists("acme")
    assert audit_of(api, "acme") == before
    assert users() == {"root": {"username": "root", "roles": ["admin"], "active": True}}
    assert tenant_login(server, "acme", "root").status_code == 200
    assert every_worker(f"{server.url}/acme/status", 200)
    assert api.get("/api/tenants/acme/jobs").json()["total"] == 0
    assert api.get("/api/tenants/acme/backups").json()["data"] == []


def test_a_backup_job_completes_and_the_audit_log_verifies(home, server, api):
    # the log verifies before anything is done
    verdict = api.get("/api/tenants/acme/audit/verify")
    assert verdict.status_code == 200
    assert verdict.json()["ok"] is True
    assert verdict.json()["entries"] == len(audit_of(api, "acme")) >= 1
    assert api.get("/api/tenants/acme/backups").json() == {"data": [], "total": 0}
    refused(api.get("/api/tenants/acme/jobs", params={"state": "bogus"}), 400)

    queued = api.post("/api/tenants/acme/backups")
    assert queued.status_code == 202, queued.text
    job = queued.json()["job"]
    assert isinstance(job, str) and job
    refused(api.post("/api/tenants/nope/backups"), 404)

    def succeeded():
        response = api.get("/api/tenants/acme/jobs", params={"state": "succeeded"})
        assert response.status_code == 200, response.text
        return [found for found in response.json()["data"] if found["id"] == job]

    poll_until(succeeded, timeout=60, interval=0.2)
    every = api.get("/api/tenants/acme/jobs").json()
    assert [found["state"] for found in every["data"] if found["id"] == job] == ["succeeded"]
    assert api.get("/api/tenants/acme/jobs", params={"state": "failed"}).json()["total"] == 0
    assert api.get("/api/tenants/globex/jobs").json()["total"] == 0

    backups = api.get("/api/tenants/acme/backups").json()["data"]
    assert len(backups) == 1
    assert backups[0]["bytes"] > 0
    [entry] = audit_of(api, "acme", action="tenant.backup")
    assert (entry["actor"], entry["target"]) == ("operator:ops", backups[0]["name"])
    assert api.get("/api/tenants/globex/backups").json() == {"data": [], "total": 0}

    verdict = api.get("/api/tenants/acme/audit/verify").json()
    entries = audit_of(api, "acme")
    assert set(verdict) == {"ok", "entries", "head"}
    assert (verdict["ok"], verdict["entries"]) == (True, len(entries))
    assert re.fullmatch(r"[0-9a-f]{64}", verdict["head"])

    # one row changed behind the log's back
    oldest = entries[-1]["id"]
    raw_sql(home, "acme", f"UPDATE {{log}} SET target = 'other' WHERE id = {oldest}")  # noqa: S608
    broken = api.get("/api/tenants/acme/audit/verify")
    assert broken.status_code == 200
    assert broken.json()["ok"] is False
    assert broken.json()["broken_at"] == oldest
    assert "content does not match" in broken.json()["reason"]
    assert api.get("/api/tenants/globex/audit/verify").json()["ok"] is True
    refused(api.get("/api/tenants/nope/audit/verify"), 404)
    refused(api.get("/api/tenants/nope/audit"), 404)
    refused(api.get("/api/tenants/nope/jobs"), 404)
    refused(api.get("/api/tenants/nope/backups"), 404)


HUGE = b'{"slug": "' + b"x" * (65 * 1024) + b'"}'
HOSTILE_SLUGS = ["..", "%2e%2e%2fx", "..%2Fetc%2Fpasswd", "acme%00", "%00", "a" * 2000, "ACME"]


def test_hostile_input_is_a_4xx_in_the_error_shape(home, server, api):
    add_user(home, "acme", "carol", USER_PASSWORD, "user")
    auth = {"Authorization": api.headers["Authorization"]}
    as_json = {**auth, "Content-Type": "application/json"}
    bodies = [
        b"{broken",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"",
        b"\xff\xfe\x00",
        b'{"slug": "\\ud800"}',
        b"[" * 10000 + b"]" * 10000,
        HUGE,
    ]
    routes = [
        ("POST", "/api/login"),
        ("POST", "/api/tenants"),
        ("PATCH", "/api/tenants/acme"),
        ("POST", "/api/tenants/acme/users"),
        ("PATCH", "/api/tenants/acme/users/carol"),
    ]
    for method, path in routes:
        for body in bodies:
            refused(api.request(method, path, content=body, headers=as_json))
        refused(api.request(method, path, data={"slug": "form"}, headers=auth))
        refused(api.request(method, path, json={"\x00": "x"}))
        refused(api.request(method, path, json={"unknown_field": True}))

    objects = {
        "/api/login": [
            {"name": "ops\x00", "password": OPERATOR_PASSWORD},
            {"name": 5, "password": ["x"]},
            {"name": "ops", "password": "p" * 60000},
            {"name": "n" * 60000, "password": "x"},
            {"name": "ops", "password": OPERATOR_PASSWORD, "evil": 1},
        ],
        "/api/tenants": [
            {"slug": 5},
            {"slug": None},
            {"slug": ["acme"]},
            {"slug": "ok-slug", "name": 5},
            {"slug": "ok-slug", "hosts": "ok.localhost"},
            {"slug": "ok-slug", "hosts": [5]},
            {"slug": "ok-slug", "blueprints": "status"},
            {"slug": "ok-slug", "blueprints": [None]},
            {"slug": "ok-slug", "evil": 1},
            {"slug": "ok\x00slug"},
            {"slug": "ok-slug", "name": "n\x00"},
            {"slug": "ok-slug", "hosts": ["bad host!"]},
            {"slug": "ok-slug", "hosts": ["h" * 5000]},
            {"slug": "ok-slug", "name": "n" * 60000},
            {"slug": "s" * 60000},
        ],
        "/api/tenants/acme/users": [
            {"username": 5, "password": USER_PASSWORD, "role": "user"},
            {"username": "eve", "password": None, "role": "user"},
            {"username": "eve", "password": USER_PASSWORD, "role": ["admin"]},
            {"username": "eve", "password": USER_PASSWORD},
            {"username": "eve", "password": USER_PASSWORD, "role": "user", "evil": 1},
            {"username": "../eve", "password": USER_PASSWORD, "role": "user"},
            {"username": "e\x00ve", "password": USER_PASSWORD, "role": "user"},
            {"username": "eve", "password": "pass\x00word-123", "role": "user"},
            {"username": "e" * 30000, "password": USER_PASSWORD, "role": "user"},
            {"username": "eve", "password": "p" * 30000, "role": "user"},
        ],
    }
    patches = {
        "/api/tenants/acme": [
            {},
            {"enabled": "false"},
            {"enabled": None},
            {"maintenance": 1},
            {"maintenance": True, "retry_after": -1},
            {"maintenance": True, "retry_after": "soon"},
            {"maintenance": True, "retry_after": 10**40},
            {"maintenance": True, "retry_after": 1.5},
            {"enabled": True, "evil": 1},
            {"retry_after": 5},
            {"enabled": True, "retry_after": "soon"},
            {"enabled": False, "maintenance": True, "retry_after": -1},
            {"enabled": False, "maintenance": "yes"},
        ],
        "/api/tenants/acme/users/carol": [
            {},
            {"active": False, "password": "short"},
            {"active": False, "roles": ["god"]},
            {"password": 5},
            {"password": "short"},
            {"password": "p" * 30000},
            {"active": "no"},
            {"roles": "admin"},
            {"roles": ["admin", "user"]},
            {"roles": ["god"]},
            {"roles": []},
            {"active": True, "evil": 1},
        ],
    }
    for path, bodies_of_path in objects.items():
        for body in bodies_of_path:
            refused(api.post(path, json=body))
    for path, bodies_of_path in patches.items():
        for body in bodies_of_path:
            refused(api.patch(path, json=body))

    # hostile slugs and usernames in the path, sent exactly as written
    paths = [
        *(f"/api/tenants/{slug}" for slug in HOSTILE_SLUGS),
        *(f"/api/tenants/{slug}/users" for slug in HOSTILE_SLUGS),
        *(f"/api/tenants/{slug}/audit/verify" for slug in HOSTILE_SLUGS),
        "/api/tenants/acme/users/%00",
        "/api/tenants/acme/users/..%2Froot",
    ]
    for path in paths:
        for method in ("GET", "DELETE", "PATCH", "POST"):
            status, body = raw_request(server.admin_port, method, path, auth)
            assert 400 <= status < 500, (method, path, status, body)
            answer = json.loads(body)
            assert ERROR_NAME.fullmatch(answer["error"]) and answer["message"], (path, answer)
            assert b"Traceback" not in body, (method, path)

    queries = [
        ("/api/tenants", {"limit": "abc"}),
        ("/api/tenants", {"limit": "-1"}),
        ("/api/tenants", {"limit": "0"}),
        ("/api/tenants", {"limit": str(10**40)}),
        ("/api/tenants", {"offset": "x"}),
        ("/api/tenants", {"q": "a\x00b"}),
        ("/api/tenants/acme/audit", {"since": "yesterday"}),
        ("/api/tenants/acme/audit", {"limit": "9" * 50}),
        ("/api/tenants/acme/audit", {"action": "x\x00"}),
        ("/api/tenants/acme/jobs", {"state": "x" * 2000}),
        ("/api/tenants/acme/jobs", {"limit": "1e3"}),
    ]
    for path, query in queries:
        refused(api.get(path, params=query), 400)

    # hostile tokens
    for header in ["Bearer " + "x" * 20000, "Bearer \x01", "Basic b3BzOnB3", "Bearer", ""]:
        status, body = raw_request(server.admin_port, "GET", "/api/me", {"Authorization": header})
        assert status in (400, 401, 431), (header[:20], status, body)
        assert b"Traceback" not in body

    # nothing of it was made or changed
    assert api.get("/api/tenants").json()["total"] == 2
    assert home.slugs() == ["acme", "globex"]
    assert api.get("/api/tenants/acme/users").json()["data"] == [
        {"username": "carol", "roles": ["user"], "active": True},
        {"username": "root", "roles": ["admin"], "active": True},
    ]
    assert tenant_login(server, "acme", "carol").status_code == 200
    acme = api.get("/api/tenants/acme").json()
    assert (acme["enabled"], acme["maintenance"]) == (True, False)
    assert every_worker(f"{server.url}/acme/status", 200)
    assert audit_of(api, "acme", actor="operator:ops") == []
    assert "Traceback" not in server.log()
