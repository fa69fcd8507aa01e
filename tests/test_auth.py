"""Token authentication: each token works at its own tenant only, and the contract's codes."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time

import jwt
import pytest
from sqlalchemy import delete

from tenantry.data.users import User, set_user_active
from tenantry.home.env import read_secrets
from tenantry.ops.lifecycle import rotate_secret
from tenantry.server.log import RequestContextFilter
from tests.conftest import bearer

PASSWORD = "correct-horse-1"


@pytest.fixture
def alice(acme, add_user):
    add_user(acme, "alice", roles=("admin",))
    return "alice"


def acme_key(home) -> str:
    return read_secrets(home, "acme")["SECRET_KEY"]


def claims_for(slug: str, user_id: int = 1, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "iat": now,
        "exp": now + 600,
        "rf_exp": now + 3600,
        "jti": secrets.token_hex(16),
        "id": user_id,
        "rls": "admin",
        "iss": f"tenantry:{slug}",
        "tenant": slug,
    }
    claims.update(overrides)
    return claims


def user_key(home, slug: str, username: str) -> str:
    """The user's random key, which a correctly forged token must carry (claim ukey)."""
    from tenantry.data.db import tenant_database

    database = tenant_database(home, slug)
    try:
        with database.transaction() as session:
            return session.query(User.token_key).filter(User.username == username).scalar()
    finally:
        database.dispose()


def forge(claims: dict, key: str, algorithm: str = "HS512") -> str:
    return jwt.encode(claims, key, algorithm)


def assert_unauthorized(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json["error"] == "unauthorized"
    assert response.mimetype == "application/json"


def test_login_then_me(client, alice, login):
    token = login("acme", "alice")
    response = client.get("/acme/auth/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json == {"id": 1, "username": "alice", "roles": ["admin"], "tenant": "acme"}


def test_wrong_password_and_unknown_user_answer_the_same(client, alice):
    wrong = client.post("/acme/auth/login", json={"username": "alice", "password": "nope-nope-1"})
    unknown = client.post("/acme/auth/login", json={"username": "zed", "password": "nope-nope-1"})
    assert_unauthorized(wrong)
    assert_unauthorized(unknown)
    assert wrong.json == unknown.json


@pytest.mark.parametrize(
    "body", [b"{broken", b"[]", b'"text"', b'{"username": 1, "password": "x"}', b""]
)
def test_bad_login_bodies_are_400(client, alice, body):
    response = client.post("/acme/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"


def test_cross_tenant_matrix(client, make_tenant, add_user, login):
    slugs = [make_tenant(slug) for slug in ("acme", "globex", "initech")]
    tokens = {}
    for slug in slugs:
        user = add_user(slug, "alice", roles=("admin",))
        assert user.id == 1
        tokens[slug] = login(slug, "alice")

    for owner, token in tokens.items():
        for slug in slugs:
            for method, path in [
                ("GET", "/auth/me"),
                ("GET", "/users"),
                ("POST", "/auth/refresh"),
                ("POST", "/auth/logout"),
            ]:
                response = client.open(f"/{slug}{path}", method=method, headers=bearer(token))
                if slug == owner:
                    if path != "/auth/logout":
                        assert response.status_code == 200, (owner, slug, path)
                else:
                    assert_unauthorized(response)


def forged_headers(home) -> dict[str, str]:
    key = acme_key(home)
    good = forge(claims_for("acme"), key)
    header, payload, signature = good.split(".")
    edited = json.loads(base64.urlsafe_b64decode(payload + "=="))
    edited["rls"] = "admin,superuser"
    edited_payload = base64.urlsafe_b64encode(json.dumps(edited).encode()).rstrip(b"=").decode()
    return {
        "garbage": "Bearer garbage",
        "empty bearer": "Bearer ",
        "bare word": "Bearer",
        "lower-case scheme": f"bearer {good}",
        "basic scheme": "Basic YWxpY2U6cGFzc3dvcmQ=",
        "two tokens": f"Bearer {good} {good}",
        "trailing junk": f"Bearer {good}!!!",
        "trailing space": f"Bearer {good} ",
        "alg none": "Bearer "
        + jwt.encode(claims_for("acme"), None, algorithm="none").rstrip(".")
        + ".",
        "alg none unsigned": "Bearer " + ".".join(good.split(".")[:2]) + ".",
        "HS256 random key": "Bearer " + forge(claims_for("acme"), secrets.token_hex(32), "HS256"),
        "HS512 random key": "Bearer " + forge(claims_for("acme"), secrets.token_hex(32)),
        "HS256 right key": "Bearer " + forge(claims_for("acme"), key, "HS256"),
        "payload edited, old signature": f"Bearer {header}.{edited_payload}.{signature}",
        "re-signed with wrong key": "Bearer " + forge(edited, secrets.token_hex(32)),
        "tenant claim swapped": "Bearer "
        + forge(claims_for("acme", tenant="globex", iss="tenantry:globex"), key),
        "no tenant claim": "Bearer "
        + forge({k: v for k, v in claims_for("acme").items() if k not in ("iss", "tenant")}, key),
        "expired": "Bearer " + forge(claims_for("acme", exp=int(time.time()) - 10), key),
        "id as string": "Bearer " + forge(claims_for("acme", id="1"), key),
        "exp as string": "Bearer " + forge(claims_for("acme", exp="never"), key),
        "unknown user id": "Bearer " + forge(claims_for("acme", user_id=999), key),
        "no jti": "Bearer "
        + forge({k: v for k, v in claims_for("acme").items() if k != "jti"}, key),
        "100 KB": "Bearer " + "a" * 100_000,
    }


def test_forged_and_malformed_tokens_are_401(home, client, alice):
    for name, header in forged_headers(home).items():
        response = client.get("/acme/auth/me", headers={"Authorization": header})
        assert response.status_code == 401, name
        assert_unauthorized(response)


def test_a_correctly_forged_token_would_pass_so_the_forgeries_above_are_meaningful(
    home, client, alice
):
    token = forge(claims_for("acme", ukey=user_key(home, "acme", "alice")), acme_key(home))
    assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 200


def test_missing_token_is_401(client, alice):
    assert_unauthorized(client.get("/acme/auth/me"))
    assert_unauthorized(client.get("/acme/users"))


def test_token_in_cookie_or_query_string_is_ignored(client, alice, login):
    token = login("acme", "alice")
    client.set_cookie("access_token", token, domain="localhost")
    assert_unauthorized(client.get("/acme/auth/me"))
    assert_unauthorized(client.get(f"/acme/auth/me?access_token={token}"))
    assert_unauthorized(client.get(f"/acme/auth/me?token={token}"))


def test_users_is_admin_only(client, alice, add_user, login):
    add_user("acme", "bob")
    bob = login("acme", "bob")
    forbidden = client.get("/acme/users", headers=bearer(bob))
    assert forbidden.status_code == 403
    assert forbidden.json["error"] == "forbidden"
    assert client.post("/acme/users", headers=bearer(bob), json={}).status_code == 403


def test_admin_lists_and_creates_users(client, alice, login):
    token = login("acme", "alice")
    created = client.post(
        "/acme/users",
        headers=bearer(token),
        json={"username": "carol", "password": "carol-password", "roles": ["user"]},
    )
    assert created.status_code == 201
    assert created.json == {"id": 2, "username": "carol", "roles": ["user"], "active": True}
    assert "password" not in json.dumps(created.json)
    listed = client.get("/acme/users", headers=bearer(token)).json["users"]
    assert [user["username"] for user in listed] == ["alice", "carol"]
    assert login("acme", "carol", "carol-password")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "alice", "password": "another-password"}, 409),
        ({"username": "dave", "password": "short"}, 400),
        ({"username": "dave", "password": 1234567890123}, 400),
        ({"username": "", "password": "long-enough-1"}, 400),
        ({"username": "da ve", "password": "long-enough-1"}, 400),
        ({"username": "dave", "password": "long-enough-1", "roles": ["root"]}, 400),
        ({"username": "dave", "password": "long-enough-1", "roles": []}, 400),
        ({"username": "dave", "password": "long-enough-1", "roles": "admin"}, 400),
    ],
)
def test_create_user_rejects_bad_input(client, alice, login, body, status):
    response = client.post("/acme/users", headers=bearer(login("acme", "alice")), json=body)
    assert response.status_code == status
    assert response.json["error"] == {400: "bad_request", 409: "conflict"}[status]


def test_logout_revokes_that_token_only(client, alice, login):
    first, second = login("acme", "alice"), login("acme", "alice")
    response = client.post("/acme/auth/logout", headers=bearer(first))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_unauthorized(client.get("/acme/auth/me", headers=bearer(first)))
    assert_unauthorized(client.post("/acme/auth/refresh", headers=bearer(first)))
    assert client.get("/acme/auth/me", headers=bearer(second)).status_code == 200


def test_refresh_a_current_token(client, alice, login):
    token = login("acme", "alice")
    response = client.post("/acme/auth/refresh", headers=bearer(token))
    assert response.status_code == 200
    fresh = response.json["access_token"]
    assert client.get("/acme/auth/me", headers=bearer(fresh)).status_code == 200


def test_refresh_an_expired_token_keeps_its_refresh_deadline(home, client, alice):
    rf_exp = int(time.time()) + 3600
    claims = claims_for(
        "acme", exp=int(time.time()) - 60, rf_exp=rf_exp, ukey=user_key(home, "acme", "alice")
    )
    expired = forge(claims, acme_key(home))
    assert_unauthorized(client.get("/acme/auth/me", headers=bearer(expired)))

    response = client.post("/acme/auth/refresh", headers=bearer(expired))

    assert response.status_code == 200
    fresh = response.json["access_token"]
    claims = jwt.decode(fresh, acme_key(home), algorithms=["HS512"])
    assert claims["rf_exp"] == rf_exp
    assert claims["exp"] > time.time()
    assert client.get("/acme/auth/me", headers=bearer(fresh)).status_code == 200


def test_refresh_after_the_refresh_lifespan_is_401(home, client, alice):
    now = int(time.time())
    stale = forge(claims_for("acme", exp=now - 120, rf_exp=now - 60), acme_key(home))
    assert_unauthorized(client.post("/acme/auth/refresh", headers=bearer(stale)))


def test_disabled_user_loses_access_at_once_and_cannot_log_in(registry, client, alice, login):
    token = login("acme", "alice")
    set_user_active(registry.lookup("acme").app.extensions["tenantry.db"], "alice", False)
    assert_unauthorized(client.get("/acme/auth/me", headers=bearer(token)))
    assert_unauthorized(
        client.post("/acme/auth/login", json={"username": "alice", "password": PASSWORD})
    )


def test_deleted_user_loses_access(registry, client, alice, login):
    token = login("acme", "alice")
    with registry.lookup("acme").app.extensions["tenantry.db"].transaction() as session:
        session.execute(delete(User).where(User.username == "alice"))
    assert_unauthorized(client.get("/acme/auth/me", headers=bearer(token)))


def test_rotate_secret_ends_that_tenants_tokens_only(home, client, alice, globex, add_user, login):
    add_user(globex, "alice")
    acme_token, globex_token = login("acme", "alice"), login("globex", "alice")
    rotate_secret(home, "acme")
    assert_unauthorized(client.get("/acme/auth/me", headers=bearer(acme_token)))
    assert client.get("/globex/auth/me", headers=bearer(globex_token)).status_code == 200
    assert login("acme", "alice")


def test_repeated_failures_lock_out_that_username_only(client, alice, add_user, globex, login):
    add_user("acme", "bob")
    add_user(globex, "alice")
    wrong = {"username": "alice", "password": "wrong-password"}
    statuses = [client.post("/acme/auth/login", json=wrong).status_code for _ in range(10)]
    assert statuses == [401] * 10

    locked = client.post("/acme/auth/login", json={"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json["error"] == "too_many_requests"
    assert int(locked.headers["Retry-After"]) >= 60

    assert login("acme", "bob")
    assert login("globex", "alice")


def test_unknown_usernames_are_locked_out_the_same_way(client, alice):
    wrong = {"username": "ghost", "password": "wrong-password"}
    for _ in range(10):
        assert client.post("/acme/auth/login", json=wrong).status_code == 401
    assert client.post("/acme/auth/login", json=wrong).status_code == 429


def test_a_success_resets_the_failure_count(client, alice, login):
    wrong = {"username": "alice", "password": "wrong-password"}
    for _ in range(9):
        client.post("/acme/auth/login", json=wrong)
    assert login("acme", "alice")
    for _ in range(9):
        assert client.post("/acme/auth/login", json=wrong).status_code == 401


def test_tenants_sharing_a_secret_key_do_not_start(home, client, acme, globex):
    assert client.get("/acme/").status_code == 200
    home.env_file(globex).write_bytes(home.env_file(acme).read_bytes())
    assert client.get("/globex/").status_code == 503
    assert client.get("/acme/").status_code == 503

    rotate_secret(home, globex)
    assert client.get("/globex/").status_code == 200
    assert client.get("/acme/").status_code == 200


def test_passwords_and_tokens_never_reach_the_logs(client, alice, login, caplog):
    caplog.handler.addFilter(RequestContextFilter())
    with caplog.at_level(logging.DEBUG, logger="tenantry"):
        token = login("acme", "alice")
        client.get("/acme/auth/me", headers=bearer(token))
        client.post("/acme/auth/login", json={"username": "alice", "password": "wrong-secret-9"})
        client.post(
            "/acme/users",
            headers=bearer(token),
            json={"username": "eve", "password": "eve-password-1"},
        )
        client.post("/acme/auth/logout", headers=bearer(token))
        client.get("/acme/auth/me", headers=bearer(token + "x"))
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in (PASSWORD, "wrong-secret-9", "eve-password-1", token, token.split(".")[2]):
        assert secret not in logged
    assert "tenantry.access" in caplog.text


class Statements:
    """Counts the SQL statements whose text holds ``marker`` while in use."""

    def __init__(self, marker: str):
        self.marker = marker
        self.count = 0

    def __enter__(self):
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._note)
        return self

    def __exit__(self, *_exc):
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._note)

    def _note(self, _connection, _cursor, statement, *_args):
        self.count += self.marker in statement


def test_a_worker_asks_the_database_about_a_token_about_once_a_second(client, alice, login):
    token = login("acme", "alice")
    with Statements("revoked_tokens") as asked:
        for _ in range(20):
            assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 200
    assert 1 <= asked.count <= 3  # 20 requests, well within a second or two
    # A token the database refuses is never kept: each request asks again.
    client.post("/acme/auth/logout", headers=bearer(token))
    with Statements("revoked_tokens") as asked:
        for _ in range(3):
            assert_unauthorized(client.get("/acme/auth/me", headers=bearer(token)))
    assert asked.count == 3


def test_a_change_made_elsewhere_is_seen_within_a_second_or_so(registry, client, alice, login):
    from tests.server import poll_until

    token = login("acme", "alice")
    assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 200  # kept now
    # As another worker or the CLI would: straight in the database.
    set_user_active(registry.lookup("acme").app.extensions["tenantry.db"], "alice", False)
    poll_until(
        lambda: client.get("/acme/auth/me", headers=bearer(token)).status_code == 401,
        timeout=2,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"active": False},
        {"password": "another-password-1"},
        {"roles": ["admin"]},
        "delete",
    ],
)
def test_a_change_through_the_api_acts_at_once_in_the_worker_that_made_it(
    client, acme, add_user, login, change
):
    add_user("acme", "root", roles=("admin",))
    add_user("acme", "bob")
    admin = bearer(login("acme", "root"))
    token = login("acme", "bob")
    assert client.get("/acme/auth/me", headers=bearer(token)).json["roles"] == ["user"]
    if change == "delete":
        assert client.delete("/acme/users/bob", headers=admin).status_code == 204
    else:
        assert client.patch("/acme/users/bob", json=change, headers=admin).status_code == 200
    after = client.get("/acme/auth/me", headers=bearer(token))
    if change == {"roles": ["admin"]}:
        assert after.json["roles"] == ["admin"]  # the new roles, not the kept ones
    else:
        assert_unauthorized(after)


def test_an_answer_read_before_a_forget_is_not_kept():
    """A request that read the user just before a disable must not keep it a second more."""
    from tenantry.data.users import TokenHolder
    from tenantry.web.auth import TokenHolders

    holders, key, holder = TokenHolders(), (1, "jti", 0, ""), TokenHolder(1, "bob", "user")
    asked = holders.asking()
    holders.forget(user_id=1)  # a disable, served meanwhile in this worker
    holders.remember(key, holder, asked)
    assert holders.get(key) is None
    holders.remember(key, holder, holders.asking())
    assert holders.get(key) == holder


def test_a_kept_answer_lasts_a_second_from_when_it_was_asked_and_room_goes_to_the_live():
    from tenantry.data.users import TokenHolder
    from tenantry.web.auth import TokenHolders

    holders = TokenHolders(size=2)
    holder = TokenHolder(1, "bob", "user")
    long_ago = (time.monotonic() - 5, 0)  # asked 5 s ago: already past its second
    holders.remember((1, "old", 0, ""), holder, long_ago)
    assert holders.get((1, "old", 0, "")) is None
    holders.remember((1, "a", 0, ""), holder, holders.asking())
    holders.remember((1, "b", 0, ""), holder, holders.asking())  # full: the expired one goes
    assert holders.get((1, "a", 0, "")) == holders.get((1, "b", 0, "")) == holder


def test_a_refreshed_token_cannot_be_refreshed_again_and_its_reuse_revokes_the_user(
    client, alice, login
):
    """Refresh rotates: the token a refresh was made from stops refreshing. Presenting it
    again (a thief, or its owner after the thief) revokes every token of the user."""
    first = login("acme", "alice")
    second = client.post("/acme/auth/refresh", headers=bearer(first)).json["access_token"]
    third = client.post("/acme/auth/refresh", headers=bearer(second)).json["access_token"]
    other_login = login("acme", "alice")
    assert client.get("/acme/auth/me", headers=bearer(third)).status_code == 200
    reused = client.post("/acme/auth/refresh", headers=bearer(first))
    assert reused.status_code == 401 and "refreshed already" in reused.json["message"]
    for token in (first, second, third, other_login):
        assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 401
    assert client.post("/acme/auth/refresh", headers=bearer(third)).status_code == 401
    assert client.get("/acme/auth/me", headers=bearer(login("acme", "alice"))).status_code == 200
