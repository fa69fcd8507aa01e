"""The platform through a real gunicorn with two workers, over real HTTP."""

from __future__ import annotations

import runpy
import time

import httpx
import pytest
from werkzeug.test import Client

from tenantry.ops.lifecycle import create_tenant, rotate_secret, set_enabled
from tests.server import GunicornServer, poll_until, raw_request

pytestmark = pytest.mark.e2e

# Fresh connections spread requests over both workers; this many in a row means all agree.
IN_A_ROW = 20


def all_answer(url: str, status: int, json_key: str | None = None, value=None):
    """Whether IN_A_ROW fresh requests all answer ``status`` (and body[json_key] == value)."""
    for _ in range(IN_A_ROW):
        response = httpx.get(url, headers={"Connection": "close"})
        if response.status_code != status:
            return False
        if json_key is not None and response.json().get(json_key) != value:
            return False
    return True


@pytest.fixture
def server(home, acme, globex):
    with GunicornServer(home, workers=2) as server:
        yield server


def test_both_workers_pick_up_create_disable_enable_and_edits(home, server):
    base = server.url
    assert httpx.get(base + "/initech/").status_code == 404

    create_tenant(home, "initech", name="Initech")
    poll_until(lambda: all_answer(base + "/initech/", 200), timeout=4)

    set_enabled(home, "initech", False)
    poll_until(lambda: all_answer(base + "/initech/", 404), timeout=4)

    set_enabled(home, "initech", True)
    poll_until(lambda: all_answer(base + "/initech/", 200), timeout=4)

    config = home.config_file("initech")
    config.write_text(config.read_text().replace('"Initech"', '"Initech Renamed"'))
    poll_until(lambda: all_answer(base + "/initech/", 200, "name", "Initech Renamed"), 4)

    home.env_file("initech").write_text("SECRET_KEY=short\n")
    poll_until(lambda: all_answer(base + "/initech/", 503), timeout=4)
    assert all_answer(base + "/acme/", 200)

    rotate_secret(home, "initech")
    poll_until(lambda: all_answer(base + "/initech/", 200), timeout=4)
    assert len(server.worker_pids()) == 2


def test_json_errors_over_real_http(server):
    for path, status in [
        ("/nope/", 404),
        ("/acme/no/such/route", 404),
        ("/healthz", 200),
    ]:
        response = httpx.get(server.url + path)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
    response = httpx.request("PATCH", server.url + "/acme/status")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/ACME/",
        "/..%2f/",
        "/..%2F..%2Fetc/passwd",
        "/%00/",
        "/acme%00/",
        "/" + "a" * 200 + "/",
        "/%2e%2e/",
        "/%C0%AE%C0%AE/",
    ],
)
def test_malformed_slugs_over_real_http_are_json_404(server, raw_path):
    status, body = raw_request(server.port, "GET", raw_path)
    assert status == 404
    assert body.startswith(b'{"error": "not_found"')


def test_host_routing_over_real_http(server):
    response = httpx.get(server.url + "/", headers={"Host": "acme.localhost"})
    assert response.json()["tenant"] == "acme"
    assert httpx.get(server.url + "/globex/", headers={"Host": "acme.localhost"}).status_code == 404


COMPARED_REQUESTS = [
    ("GET", "/"),
    ("GET", "/status"),
    ("GET", "/status/"),
    ("GET", "/no/such/route"),
    ("DELETE", "/status"),
    ("HEAD", "/"),
    ("OPTIONS", "/status"),
]


def comparable(response) -> tuple:
    headers = {k.lower(): v for k, v in response.headers.items()}
    for volatile in ("date", "x-request-id", "server", "connection", "transfer-encoding"):
        headers.pop(volatile, None)
    body = response.content if isinstance(response, httpx.Response) else response.get_data()
    return response.status_code, headers, body


def test_standalone_wsgi_module_answers_like_the_dispatcher(home, acme, registry, monkeypatch):
    monkeypatch.setenv("TENANTRY_HOME", "/nonexistent")  # its own location wins
    standalone = runpy.run_path(str(home.instance_dir(acme) / "wsgi.py"))["application"]
    from tenantry.server.dispatch import TenantDispatcher
    from tenantry.server.log import RequestLog

    alone = Client(standalone)
    dispatched = Client(RequestLog(TenantDispatcher(registry)))
    for method, path in COMPARED_REQUESTS:
        assert comparable(alone.open(path, method=method)) == comparable(
            dispatched.open("/acme" + path, method=method)
        ), (method, path)


def test_standalone_gunicorn_answers_like_the_dispatched_one(home, server):
    with GunicornServer(
        home,
        app="wsgi:application",
        workers=1,
        chdir=home.instance_dir("acme"),
        env={"TENANTRY_HOME": "/nonexistent"},
        ready_path="/",
    ) as alone:
        for method, path in COMPARED_REQUESTS:
            assert comparable(httpx.request(method, alone.url + path)) == comparable(
                httpx.request(method, server.url + "/acme" + path)
            ), (method, path)


def test_gunicorns_own_log_lines_keep_their_process_id(home, acme):
    """tenantry spares its own records the process look-up; gunicorn's error log, which
    prints ``[%(process)d]``, must still get it (it printed "--- Logging error ---")."""
    with GunicornServer(home, workers=2) as server:
        for _ in range(4):
            assert (
                httpx.get(f"{server.url}/acme/", headers={"Connection": "close"}).status_code == 200
            )
        pids = server.worker_pids()
    log = server.log()
    assert "Logging error" not in log
    for pid in pids:
        assert f"[{pid}] [INFO] Worker exiting (pid: {pid})" in log, log
    assert "tenant=acme" in log  # tenantry's own lines, in their own format


def test_nul_and_host_forms_over_real_http(home, server, tenantry):
    """Issue 29's NUL and host-form fixes through a real gunicorn: NUL in a JSON body, a
    path or a query is a JSON 400 on either backend; a host written in another case, with
    a port or a final dot, is one host, and a clone does not take it."""
    nul = httpx.post(f"{server.url}/acme/auth/login", json={"username": "a\x00", "password": "x"})
    assert (nul.status_code, nul.json()["error"]) == (400, "bad_request")
    for target in ("/acme/files/a%00b", "/acme/cached-file?uid=%00"):
        status, body = raw_request(server.port, "GET", target)
        assert status == 400 and b"bad_request" in body, target
    config = home.config_file("globex")
    config.write_text(config.read_text() + '    HOSTS = ("Globex.Example.",)\n')
    for host in ("globex.example", "GLOBEX.example:8080", "globex.example."):
        poll_until(
            lambda host=host: (
                httpx.get(server.url + "/", headers={"Host": host}).json().get("tenant") == "globex"
            ),
            timeout=5,
        )
    cloned = tenantry("tenants", "clone", "globex", "copy")
    assert cloned.exit_code == 0 and "hosts not carried" in cloned.output
    time.sleep(1.5)  # every worker has seen the copy
    assert httpx.get(server.url + "/", headers={"Host": "globex.example"}).json()["tenant"] == (
        "globex"
    )
