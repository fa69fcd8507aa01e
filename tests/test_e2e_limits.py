"""Per-tenant fairness on a real `tenantry serve` model (2 gevent workers): the
concurrency cap answers 429 with Retry-After at once, and a Redis-shared rate limit holds
across both workers."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from tenantry.server.limits import RateLimits
from tests.server import GunicornServer, poll_until
from tests.test_limits import SLOW, configure

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_the_concurrency_cap_answers_429_at_once_and_spares_the_others(
    home, make_tenant, write_module, tmp_path
):
    slow = write_module(SLOW.replace("release.wait(10)", "release.wait(3)"))
    make_tenant("busy", blueprints=("landing", slow))
    make_tenant("calm", blueprints=("landing",))
    configure(home, "busy", MAX_CONCURRENT_REQUESTS=1)
    modules = str(tmp_path / "modules")
    with GunicornServer(home, workers=1, env={"PYTHONPATH": modules}) as server:
        holding = threading.Thread(target=lambda: httpx.get(f"{server.url}/busy/slow", timeout=10))
        holding.start()
        try:
            refused = poll_until(
                lambda: (r := httpx.get(f"{server.url}/busy/", timeout=5)).status_code == 429 and r,
                timeout=3,
            )
            assert refused.json()["error"] == "too_many_requests"
            assert refused.headers["Retry-After"] == "1"
            assert refused.elapsed.total_seconds() < 1  # answered at once, not queued
            calm = httpx.get(f"{server.url}/calm/", timeout=5)
            assert calm.status_code == 200 and calm.elapsed.total_seconds() < 1
        finally:
            holding.join()
        assert httpx.get(f"{server.url}/busy/").status_code == 200


def test_a_redis_shared_rate_limit_holds_across_both_workers(home, make_tenant):
    try:
        RateLimits(REDIS_URL).limiter.storage.check()
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    slug = f"r{uuid.uuid4().hex[:8]}"  # a key of its own in the shared store
    make_tenant(slug)
    configure(home, slug, RATE_LIMIT="10/minute")
    with GunicornServer(home, workers=2, env={"TENANTRY_REDIS_URL": REDIS_URL}) as server:
        answers = [
            httpx.get(f"{server.url}/{slug}/", headers={"Connection": "close"}) for _ in range(16)
        ]
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * 10 + [429] * 6, statuses  # not 10 per worker
    assert answers[9].headers["RateLimit-Remaining"] == "0"
    assert int(answers[10].headers["Retry-After"]) >= 1
