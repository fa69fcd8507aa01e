"""Two hosts, one deployment: two `tenantry serve` servers on different ports
share PostgreSQL, one bucket of an S3 API (moto's server), Redis and the home folder, and
act as one: what is stored through one is there through the other, a link is redeemed
exactly once across both, a new tenant is served by both within 2 s, and a rate limit
holds across both."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid

import httpx
import pytest

from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.server.limits import RateLimits
from tenantry.web.auth import guard_of
from tests import postgres
from tests.backends import S3_ID
from tests.server import GunicornServer
from tests.test_e2e_limits import REDIS_URL
from tests.test_limits import configure

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("storage_backend"),
    pytest.mark.parametrize("storage_backend", [S3_ID], indirect=True),
    pytest.mark.parametrize("database_url", [postgres.PARAM_ID], indirect=True),
]

PASSWORD = "correct-horse-1"
MiB = 1024**2


@pytest.fixture
def hosts(home, make_tenant):
    """Hosts A and B, serving acme (alice may log in) and a rate-limited tenant."""
    try:
        RateLimits(REDIS_URL).limiter.storage.check()
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    make_tenant("acme")
    # 8 GETs of a link at once per host: none may be turned away by the per-worker cap.
    configure(home, "acme", MAX_CONCURRENT_REQUESTS=16)
    app = create_app(load_config_class(home, "acme"), home)
    create_user(
        app.extensions["tenantry.db"], guard_of(app).hash_password, "alice", PASSWORD, ["user"]
    )
    app.extensions["tenantry.db"].dispose()
    limited = f"r{uuid.uuid4().hex[:8]}"  # a key of its own in the shared Redis
    make_tenant(limited)
    configure(home, limited, RATE_LIMIT="10/minute")
    env = {"TENANTRY_REDIS_URL": REDIS_URL}
    with GunicornServer(home, env=env) as first, GunicornServer(home, env=env) as second:
        yield first, second, limited


def login(server) -> dict:
    response = httpx.post(
        f"{server.url}/acme/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_a_file_uploaded_through_one_host_is_downloaded_through_the_other(
    hosts, home, storage_backend
):
    first, second, _ = hosts
    auth = login(first)  # a token of one host works at the other: the same tenant
    body = os.urandom(9 * MiB)  # over one part: a multipart upload
    stored = httpx.put(f"{first.url}/acme/files/shared.bin", content=body, headers=auth)
    assert stored.status_code == 201
    sha256 = hashlib.sha256(body).hexdigest()
    # in the bucket, not on the home both hosts share
    assert storage_backend.read(home, "acme", "blobs", sha256) == body
    assert not any((home.instance_dir("acme") / "storage" / ".blobs").iterdir())
    download = httpx.get(f"{second.url}/acme/files/shared.bin", headers=auth)
    assert download.status_code == 200 and download.content == body
    assert download.headers["ETag"].strip('"') == hashlib.sha256(body).hexdigest()
    ranged = httpx.get(
        f"{second.url}/acme/files/shared.bin", headers={**auth, "Range": "bytes=8388600-8388615"}
    )
    assert ranged.status_code == 206 and ranged.content == body[8388600:8388616]
    assert httpx.delete(f"{second.url}/acme/files/shared.bin", headers=auth).status_code == 204
    assert httpx.get(f"{first.url}/acme/files/shared.bin", headers=auth).status_code == 404


def test_a_link_is_redeemed_exactly_once_across_both_hosts(hosts):
    first, second, _ = hosts
    auth = login(first)
    body = os.urandom(MiB)
    httpx.put(f"{first.url}/acme/files/once.bin", content=body, headers=auth)
    addr = httpx.post(f"{first.url}/acme/files/once.bin/link", headers=auth).json()["addr"]
    barrier = threading.Barrier(16)
    answers: list = [None] * 16

    def redeem(number: int) -> None:
        host = (first, second)[number % 2]  # 8 GETs through each host
        barrier.wait()
        answers[number] = httpx.get(f"{host.url}{addr}", headers={"Connection": "close"})

    threads = [threading.Thread(target=redeem, args=(number,)) for number in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [410] * 15, statuses
    (winner,) = [answer for answer in answers if answer.status_code == 200]
    assert winner.content == body


def test_a_tenant_created_through_the_cli_is_served_by_both_within_2_s(hosts, tenantry):
    first, second, _ = hosts
    result = tenantry("tenants", "create", "newco")
    assert result.exit_code == 0, result.output
    created = time.monotonic()
    waiting = {first.url, second.url}
    while waiting and time.monotonic() - created < 2:
        for url in list(waiting):
            if httpx.get(f"{url}/newco/").status_code == 200:
                waiting.discard(url)
        time.sleep(0.05)
    assert not waiting, f"not served within 2 s by {sorted(waiting)}"


def test_a_rate_limit_shared_through_redis_holds_across_both_hosts(hosts):
    first, second, limited = hosts
    answers = [
        httpx.get(f"{(first, second)[number % 2].url}/{limited}/", headers={"Connection": "close"})
        for number in range(16)
    ]
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * 10 + [429] * 6, statuses  # 10 in all, not 10 per host
