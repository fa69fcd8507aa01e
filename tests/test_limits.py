"""Per-tenant fairness: MAX_CONCURRENT_REQUESTS and RATE_LIMIT, refused before any work."""

from __future__ import annotations

import threading
import uuid

import pytest

from tenantry.ops.checks import check_tenants
from tenantry.server.limits import REDIS_URL_ENV_VAR, RateLimits, rejections
from tests.server import poll_until

SLOW = """
import threading

from flask import Blueprint
from tenantry.endpoint import TenantApi, TenantResource, operation

blueprint = Blueprint("{name}", __name__)
release = threading.Event()
waiting = []


class Slow(TenantResource):
    openapi = {{"get": operation("Waits", {{200: {{"type": "object"}}}}, public=True)}}

    def get(self):
        waiting.append(1)
        release.wait(10)
        return {{"done": True}}


TenantApi(blueprint).add_resource(Slow, "/slow")
"""


def configure(home, slug: str, **settings) -> None:
    path = home.config_file(slug)
    path.write_text(path.read_text() + "".join(f"    {k} = {v!r}\n" for k, v in settings.items()))


def test_a_request_over_the_concurrency_cap_is_429_at_once(home, client, make_tenant, write_module):
    slow = write_module(SLOW)
    make_tenant("busy", blueprints=("landing", slow))
    make_tenant("calm", blueprints=("landing",))
    configure(home, "busy", MAX_CONCURRENT_REQUESTS=2)
    module = __import__(slow)
    before = rejections[("busy", "concurrency")]
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(client.get("/busy/slow").status_code))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        poll_until(lambda: len(module.waiting) == 2)
        refused = client.get("/busy/")
        assert (refused.status_code, refused.json["error"]) == (429, "too_many_requests")
        assert refused.headers["Retry-After"] == "1"
        assert client.get("/calm/").status_code == 200  # the other tenants keep their share
        assert rejections[("busy", "concurrency")] == before + 1
    finally:
        module.release.set()
        for thread in threads:
            thread.join()
    assert answers == [200, 200]
    assert client.get("/busy/").status_code == 200  # the slots were given back


def test_a_tenant_over_its_rate_limit_gets_429_and_ratelimit_headers(home, client, make_tenant):
    slug = f"r{uuid.uuid4().hex[:8]}"
    make_tenant(slug)
    make_tenant("other")
    configure(home, slug, RATE_LIMIT="3/minute")
    answers = [client.get(f"/{slug}/") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert answers[0].headers["RateLimit-Policy"] == "3;w=60"
    refused = answers[3]
    assert refused.json["error"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "RateLimit-Limit" not in client.get("/other/").headers  # no limit, no headers
    assert client.get("/other/").status_code == 200


def test_the_rate_limit_is_shared_through_redis(home, client, make_tenant, monkeypatch):
    url = "redis://127.0.0.1:6379/0"
    try:
        RateLimits(url).limiter.storage.check()
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at {url}: {exc}")
    monkeypatch.setenv(REDIS_URL_ENV_VAR, url)
    slug = f"r{uuid.uuid4().hex[:8]}"
    make_tenant(slug)
    configure(home, slug, RATE_LIMIT="2/minute")
    assert client.get(f"/{slug}/").status_code == 200
    # A second process (a fresh store object) sees the same count.
    RateLimits._instance = None
    assert client.get(f"/{slug}/").status_code == 200
    assert client.get(f"/{slug}/").status_code == 429


def test_an_unreachable_limit_store_lets_requests_through(home, client, make_tenant, monkeypatch):
    monkeypatch.setenv(REDIS_URL_ENV_VAR, "redis://127.0.0.1:1/0")
    make_tenant("acme")
    configure(home, "acme", RATE_LIMIT="1/minute")
    assert [client.get("/acme/").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("RATE_LIMIT", "lots"),
        ("RATE_LIMIT", 600),
        ("MAX_CONCURRENT_REQUESTS", 0),
        ("MAX_CONCURRENT_REQUESTS", True),
    ],
)
def test_bad_limits_are_named_by_check(home, make_tenant, setting, value):
    make_tenant("acme")
    configure(home, "acme", **{setting: value})
    assert any(setting in problem for problem in check_tenants(home)["acme"].problems)


def test_body_and_quota_refusals_are_counted(home, client, make_tenant, add_user, login):
    make_tenant("acme")
    configure(home, "acme", MAX_JSON_BODY=100, STORAGE_QUOTA=10)
    add_user("acme", "root", roles=("admin",))
    body, quota = rejections[("acme", "body")], rejections[("acme", "quota")]
    assert client.post("/acme/auth/login", json={"x": "y" * 200}).status_code == 413
    token = login("acme", "root")
    response = client.put(
        "/acme/files/a", data=b"x" * 100, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 507
    assert (rejections[("acme", "body")], rejections[("acme", "quota")]) == (body + 1, quota + 1)
