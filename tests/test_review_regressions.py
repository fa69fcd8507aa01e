"""Defects found in review, each pinned by the test that would have caught it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import column, delete, table, update

from tenantry.data.db import SCHEMA_REVISION, tenant_database
from tenantry.data.users import User
from tenantry.ops.lifecycle import rotate_secret, set_enabled
from tests.conftest import bearer, drop_database, revision_of
from tests.server import poll_until


def test_a_deleted_users_token_never_names_a_new_user(registry, client, acme, add_user, login):
    add_user(acme, "root", roles=("admin",))
    add_user(acme, "carl")
    carl = login(acme, "carl")
    with registry.lookup(acme).app.extensions["tenantry.db"].transaction() as session:
        session.execute(delete(User).where(User.username == "carl"))
    eve = add_user(acme, "eve", roles=("admin",))
    assert eve.id == 3
    assert client.get("/acme/auth/me", headers=bearer(carl)).status_code == 401
    assert client.get("/acme/users", headers=bearer(carl)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "alice", "password": "' + b"p" * 5000 + b'"}',
        b'{"username": "ghost", "password": "' + b"p" * 5000 + b'"}',
        b'{"username": "' + b"u" * 200_000 + b'", "password": "whatever-12"}',
    ],
)
def test_oversized_logins_are_plain_401s(client, acme, add_user, body):
    add_user(acme, "alice")
    response = client.post("/acme/auth/login", data=body, content_type="application/json")
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "alice", "password": "\\ud800\\ud800\\ud800\\ud800\\ud800"}',
        b'{"username": "\\ud800", "password": "correct-horse-1"}',
        b"[" * 200_000 + b"]" * 200_000,
        b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    ],
)
def test_hostile_json_is_400_not_500(client, acme, add_user, login, body):
    add_user(acme, "alice", roles=("admin",))
    token = login(acme, "alice")
    for path in ("/acme/auth/login", "/acme/users", "/acme/api/datasets"):
        response = client.post(
            path, data=body, content_type="application/json", headers=bearer(token)
        )
        assert response.status_code == 400, path
        assert response.json["error"] == "bad_request"


NUL = "\x00"
# Every JSON route of the built-ins, with a body whose strings reach the database.
NUL_BODIES = [
    ("POST", "/auth/login", {"username": f"alice{NUL}", "password": "correct-horse-1"}),
    ("POST", "/users", {"username": f"n{NUL}", "password": "long-password-1", "roles": []}),
    ("PATCH", "/users/alice", {"password": f"long-password{NUL}1"}),
    ("POST", "/files/a.txt/link", {"expires_in": 60, f"k{NUL}": 1}),
    ("POST", "/api/datasets", {"name": "d", "description": f"x{NUL}", "files": ["a.txt"]}),
    ("POST", "/api/datasets", {"name": "d", "files": ["a.txt"], "uses": [f"u{NUL}"]}),
    ("POST", "/api/datasets/download", {"datasets": [f"x{NUL}"]}),
]


def test_nul_is_a_400_on_every_json_route_and_in_the_url(client, acme, add_user, login):
    """PostgreSQL cannot hold NUL in text (it was a 500 there) and SQLite can: both
    backends refuse it alike, in a body's strings and keys, a path or a query."""
    add_user(acme, "alice", roles=("admin",))
    admin = bearer(login(acme, "alice"))
    client.put("/acme/files/a.txt", data=b"hello", headers=admin)
    for method, path, body in NUL_BODIES:
        response = client.open(f"/acme{path}", method=method, json=body, headers=admin)
        assert response.status_code == 400, (path, body, response.json)
        assert response.json["error"] == "bad_request" and "NUL" in response.json["message"]
    for url in ("/acme/users/al%00ice", "/acme/api/datasets/x%00", "/acme/audit?action=%00"):
        response = client.get(url, headers=admin)
        assert (response.status_code, response.json["error"]) == (400, "bad_request"), url
    users = client.get("/acme/users", headers=admin).json["users"]
    assert [user["username"] for user in users] == ["alice"]  # nothing was written


def test_creating_a_user_with_an_overlong_password_is_400(client, acme, add_user, login):
    add_user(acme, "alice", roles=("admin",))
    response = client.post(
        "/acme/users",
        json={"username": "bob", "password": "p" * 5000},
        headers=bearer(login(acme, "alice")),
    )
    assert response.status_code == 400


def test_rotating_one_of_two_shared_keys_frees_the_other_at_once(home, client, acme, globex):
    assert client.get("/acme/").status_code == 200
    home.env_file(globex).write_bytes(home.env_file(acme).read_bytes())
    assert client.get("/globex/").status_code == 503  # acme is loaded: both are refused
    assert client.get("/acme/").status_code == 503
    rotate_secret(home, globex)
    # Only acme is asked for: globex's stale entry must not keep holding the old key.
    assert [client.get("/acme/").status_code for _ in range(5)] == [200] * 5


def test_a_host_moved_off_a_disabled_tenant_routes_to_its_new_tenant(
    home, client, acme, make_tenant
):
    make_tenant("newco")
    assert client.get("/", headers={"Host": "acme.localhost"}).json["tenant"] == "acme"
    set_enabled(home, acme, False)
    assert client.get("/", headers={"Host": "acme.localhost"}).status_code == 404
    moved_from, moved_to = home.config_file(acme), home.config_file("newco")
    moved_from.write_text(
        moved_from.read_text().replace('HOSTS = ("acme.localhost",)', "HOSTS = ()")
    )
    moved_to.write_text(moved_to.read_text().replace("HOSTS = ()", 'HOSTS = ("acme.localhost",)'))
    # The host index follows in the background, never inside a request.
    poll_until(
        lambda: client.get("/", headers={"Host": "acme.localhost"}).json.get("tenant") == "newco",
        timeout=2,
    )


def test_a_broken_tenant_answers_503_on_its_host_too(home, client, acme):
    assert client.get("/status", headers={"Host": "acme.localhost"}).status_code == 200
    config = home.config_file(acme)
    config.write_text(config.read_text() + "\nthis is not python\n")
    assert client.get("/status", headers={"Host": "acme.localhost"}).status_code == 503


def test_a_fully_qualified_host_with_trailing_dot_is_routed(client, acme):
    assert client.get("/", headers={"Host": "acme.localhost.:80"}).json["tenant"] == "acme"


def test_unknown_slugs_leave_nothing_behind(registry, client, acme):
    for number in range(500):
        client.get(f"/unknown{number}/")
    assert registry.loaded_slugs() == []
    assert set(registry._slug_locks) <= {acme}


def test_empty_answers_carry_no_content_type(client, acme, add_user, login):
    add_user(acme, "alice")
    options = client.options("/acme/status")
    assert options.status_code == 204
    assert "Content-Type" not in options.headers
    logout = client.post("/acme/auth/logout", headers=bearer(login(acme, "alice")))
    assert logout.status_code == 204
    assert "Content-Type" not in logout.headers


def tenantry_cli(home, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tenantry.cli", "--home", str(home.root), *args],
        input=stdin,
        capture_output=True,
    )


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("users", "add", "acme", "u1", "--role", "user", "--password-stdin"),
         b"abc\xffdefghijkl\n"),
        (("users", "add", "acme", "u2", "--role", "user", "--password-stdin"), b"p" * 5000 + b"\n"),
        (("users", "disable", "acme", os.fsdecode(b"\xff")), b""),
        (("tenants", "create", "zz", "--name", os.fsdecode(b"\xff")), b""),
    ],
)  # fmt: skip
def test_hostile_cli_input_exits_2_without_a_traceback(home, acme, args, stdin):
    result = tenantry_cli(home, *args, stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert b"Traceback" not in result.stderr
    assert not home.config_file("zz").exists()


def test_migrate_goes_on_past_a_broken_tenant(home, make_tenant):
    make_tenant("aa")
    make_tenant("bb")
    make_tenant("cc")
    drop_database(home, "aa")
    os.rename(home.instance_dir("cc"), home.root / "cc-moved")  # instance folder missing
    database = tenant_database(home, "bb")
    with database.engine.begin() as connection:  # at a revision no migration knows
        version = table("alembic_version", column("version_num"), schema=database.schema)
        connection.execute(update(version).values(version_num="9999"))
    database.dispose()
    result = tenantry_cli(home, "migrate")
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    assert b"bb: failed" in result.stderr
    assert b"aa: at revision" in result.stdout
    assert b"cc: at revision" in result.stdout
    assert revision_of(home, "aa") == SCHEMA_REVISION


# -- files, links and datasets (second review) ----------------------------------------


@pytest.fixture
def admin(acme, add_user, login):
    add_user(acme, "root", roles=("admin",))
    return bearer(login(acme, "root"))


def test_a_body_of_exactly_max_content_length_is_accepted(home, client, admin):
    config = home.config_file("acme")
    config.write_text(config.read_text() + "    MAX_CONTENT_LENGTH = 1000\n")
    exact = client.put("/acme/files/exact", data=b"x" * 1000, headers=admin)
    assert exact.status_code == 201, exact.json
    assert client.put("/acme/files/over", data=b"x" * 1001, headers=admin).status_code == 413


@pytest.mark.parametrize("query", ["limit=%C2%B2", "offset=%C2%B9", "limit=%EF%BC%91",
                                   "q=%00", "uses=a%00"])  # fmt: skip
def test_odd_query_values_are_400(client, admin, query):
    response = client.get(f"/acme/api/datasets?{query}", headers=admin)
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"


def test_huge_name_lists_are_400(client, admin):
    names = [f"d{number}" for number in range(50_000)]  # over MAX_ITEMS, under MAX_JSON_BODY
    response = client.post("/acme/api/datasets/download", json={"datasets": names}, headers=admin)
    assert response.status_code == 400
    response = client.post(
        "/acme/api/datasets", json={"name": "big", "files": names}, headers=admin
    )
    assert response.status_code == 400
    # Longer lists do not even get read: a body over MAX_JSON_BODY is a 413.
    names = [f"d{number}" for number in range(300_000)]
    response = client.post("/acme/api/datasets/download", json={"datasets": names}, headers=admin)
    assert (response.status_code, response.json["error"]) == (413, "payload_too_large")


def test_q_folds_case_beyond_ascii(client, admin):
    client.post(
        "/acme/api/datasets", json={"name": "complaints", "description": "ÄRGER und Ölpreis"},
        headers=admin,
    )  # fmt: skip
    for q in ("%C3%84RGER", "%C3%A4rger", "%C3%96LPREIS"):
        assert client.get(f"/acme/api/datasets?q={q}", headers=admin).json["total"] == 1


def test_a_name_with_a_slash_is_another_path_not_a_file(client, admin):
    # A "/" (even encoded: the server decodes it) makes a different path, so the router
    # answers 404; a 400 would turn PUT /files/x/info into an upload instead of a 405.
    for name in ("a%2Fb", "..%2F..%2Fx", "a/b"):
        response = client.put(f"/acme/files/{name}", data=b"x", headers=admin)
        assert response.status_code == 404
        assert response.json["error"] == "not_found"
    assert client.put("/acme/files/x/info", headers=admin).status_code == 405
