"""Behind a reverse proxy, on a real gunicorn: TENANTRY_TRUSTED_PROXIES=N takes the client
address, scheme and host from the last N ``X-Forwarded-*`` hops, and only then.

What is observed: the address gunicorn's access log prints (``%(h)s``, REMOTE_ADDR after the
app ran; tenantry's own access line names no address), and what a tenant's endpoint sees
(``request.remote_addr``, ``scheme``, ``host``), where rate limits and lock-outs would look.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from werkzeug.middleware.proxy_fix import ProxyFix

from tenantry.home.layout import DATABASE_URL_ENV_VAR
from tenantry.server.settings import TRUSTED_PROXIES_ENV_VAR, trusted_proxies
from tenantry.wsgi import behind_proxies
from tests.server import GunicornServer, poll_until

pytestmark = pytest.mark.e2e

FORGED = "203.0.113.9"
HOST = "acme.localhost"
# gunicorn's access log on stdout (the server's log file): "<REMOTE_ADDR> <request line>"
ACCESS_LOG = {"GUNICORN_CMD_ARGS": "--access-logfile - --access-logformat '%(h)s \"%(r)s\"'"}

SEEN = """
from flask import Blueprint, request
from tenantry.endpoint import TenantApi, TenantResource, operation

blueprint = Blueprint("{name}", __name__)


class Seen(TenantResource):
    openapi = {{"get": operation("What the app sees", {{200: {{"type": "object"}}}}, public=True)}}

    def get(self):
        return {{"addr": request.remote_addr, "scheme": request.scheme, "host": request.host}}


TenantApi(blueprint).add_resource(Seen, "/seen")
"""


@pytest.fixture
def database_url(monkeypatch):
    """The proxy layer sits outside every tenant: SQLite only (fewer servers to start)."""
    monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
    return None


@pytest.fixture
def acme(make_tenant, write_module):
    """acme at HOSTS ``acme.localhost``, with an endpoint that echoes what the app sees."""
    return make_tenant("acme", hosts=(HOST,), blueprints=("landing", write_module(SEEN)))


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The servers' environment: the echo module importable, gunicorn's access log on."""
    monkeypatch.delenv(TRUSTED_PROXIES_ENV_VAR, raising=False)

    def make(**extra: str) -> dict[str, str]:
        return {"PYTHONPATH": str(tmp_path / "modules"), **ACCESS_LOG, **extra}

    return make


def logged_address(server: GunicornServer, url: str, headers: dict[str, str]) -> str:
    """Request ``url`` (made unique) and return the client address gunicorn's access log
    prints for it."""
    marker = uuid.uuid4().hex
    response = httpx.get(f"{url}?probe={marker}", headers=headers)
    assert response.status_code == 200, response.text
    line = poll_until(
        lambda: next((ln for ln in server.log().splitlines() if f"probe={marker}" in ln), None)
    )
    return line.split(" ", 1)[0]


def test_trusted_proxies_is_a_whole_number_from_the_environment(monkeypatch):
    monkeypatch.delenv(TRUSTED_PROXIES_ENV_VAR, raising=False)
    assert trusted_proxies() == 0
    for value, count in [("", 0), ("0", 0), ("1", 1), (" 2 ", 2)]:
        monkeypatch.setenv(TRUSTED_PROXIES_ENV_VAR, value)
        assert trusted_proxies() == count
    for value in ["abc", "-1", "+1", "1.5", "1_0", "\u00b2"]:
        monkeypatch.setenv(TRUSTED_PROXIES_ENV_VAR, value)
        with pytest.raises(ValueError, match=TRUSTED_PROXIES_ENV_VAR):
            trusted_proxies()


def test_no_trusted_proxy_wraps_nothing_and_n_trusts_every_header_but_the_prefix():
    def app(environ, start_response):
        raise AssertionError("not called")

    assert behind_proxies(app, 0) is app
    fixed = behind_proxies(app, 2)
    assert isinstance(fixed, ProxyFix) and fixed.app is app
    assert (fixed.x_for, fixed.x_proto, fixed.x_host, fixed.x_port, fixed.x_prefix) == (
        2,
        2,
        2,
        2,
        0,
    )


def test_without_trusted_proxies_forwarded_headers_are_ignored(home, acme, env):
    forged = {"X-Forwarded-For": FORGED, "X-Forwarded-Host": HOST, "X-Forwarded-Port": "8443"}
    with GunicornServer(home, workers=1, env=env()) as server:
        assert logged_address(server, f"{server.url}/acme/seen", forged) == "127.0.0.1"
        seen = httpx.get(f"{server.url}/acme/seen", headers=forged).json()
        assert seen == {"addr": "127.0.0.1", "scheme": "http", "host": f"127.0.0.1:{server.port}"}
        # Not host-routed: "/" is no tenant's.
        assert httpx.get(server.url + "/", headers=forged).status_code == 404
    assert FORGED not in server.log()


def test_one_trusted_proxy_gives_the_client_address_scheme_and_host(home, acme, env):
    with GunicornServer(home, workers=1, env=env(**{TRUSTED_PROXIES_ENV_VAR: "1"})) as server:
        # The proxy appends the address it saw: only that last hop is trusted.
        hops = {"X-Forwarded-For": f"198.51.100.7, {FORGED}"}
        assert logged_address(server, f"{server.url}/acme/seen", hops) == FORGED
        forwarded = {
            **hops,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": HOST,
            "X-Forwarded-Port": "8443",
        }
        # Host-routed to acme by the forwarded host, whatever Host the proxy connected with.
        seen = httpx.get(f"{server.url}/seen", headers=forwarded)
        assert seen.status_code == 200, seen.text
        assert seen.json() == {"addr": FORGED, "scheme": "https", "host": f"{HOST}:8443"}
        assert httpx.get(server.url + "/", headers=forwarded).json()["tenant"] == "acme"
        # Without the headers, the peer itself.
        assert httpx.get(f"{server.url}/acme/seen").json()["addr"] == "127.0.0.1"
    assert "198.51.100.7" not in server.log()


def test_the_standalone_tenant_entrypoint_honours_it(home, acme, env):
    with GunicornServer(
        home,
        app="wsgi:application",
        workers=1,
        chdir=home.instance_dir(acme),
        env=env(**{TRUSTED_PROXIES_ENV_VAR: "1"}),
        ready_path="/",
    ) as alone:
        assert logged_address(alone, f"{alone.url}/seen", {"X-Forwarded-For": FORGED}) == FORGED
        forwarded = {"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "https"}
        seen = httpx.get(f"{alone.url}/seen", headers=forwarded).json()
        assert (seen["addr"], seen["scheme"]) == (FORGED, "https")


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_an_invalid_value_stops_the_server_naming_the_variable(home, acme, env, value):
    server = GunicornServer(home, workers=1, env=env(**{TRUSTED_PROXIES_ENV_VAR: value}))
    with pytest.raises(RuntimeError, match="exited early") as failed:
        server.__enter__()
    assert f"{TRUSTED_PROXIES_ENV_VAR} must be a whole number >= 0" in str(failed.value)
    assert repr(value) in str(failed.value)
