"""The dispatcher: path and host routing, health, unknown and broken tenants."""

from __future__ import annotations

import io
import logging
import random
import re
import threading
import time

import pytest
from flask import url_for

from tenantry.home import hosts
from tenantry.home.hosts import HostIndex
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.ops.lifecycle import set_enabled
from tenantry.server import log
from tenantry.server.log import RequestContextFilter, _LineFormatter, access_log, configure_logging
from tenantry.support.atomic import write_atomically
from tenantry.support.closing import call_on_close


def test_path_routing_serves_each_tenant_at_its_prefix(client, acme, globex):
    assert client.get("/acme/").json == {
        "tenant": "acme",
        "name": "Acme Corp",
        "blueprints": ["landing", "status", "auth", "files", "datasets"],
    }
    assert client.get("/globex/").json["tenant"] == "globex"


def test_prefix_without_slash_answers_like_with_slash(client, acme):
    without, with_slash = client.get("/acme"), client.get("/acme/")
    assert without.status_code == with_slash.status_code == 200
    assert without.json == with_slash.json


def test_no_redirects_clean_up_paths(client, acme):
    for path in ("/acme//status", "/acme/status/", "/acme//"):
        response = client.get(path)
        assert response.status_code in (200, 404)
        assert "Location" not in response.headers


def test_host_routing_serves_the_tenant_at_root(client, acme, globex):
    response = client.get("/", headers={"Host": "ACME.localhost:8000"})
    assert response.json["tenant"] == "acme"


def test_a_tenant_host_does_not_route_to_other_tenants_by_path(client, acme, globex):
    response = client.get("/globex/", headers={"Host": "acme.localhost"})
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_url_for_is_right_under_prefix_and_under_host(registry, client, acme):
    app = registry.lookup(acme).app
    app.add_url_rule("/where", "where", lambda: {"status": url_for("status.status")})

    assert client.get("/acme/where").json == {"status": "/acme/status"}
    assert client.get("/where", headers={"Host": "acme.localhost"}).json == {"status": "/status"}


def test_healthz_answers_on_every_host_and_lists_no_tenants(client, acme):
    for host in ("localhost", "acme.localhost"):
        response = client.get("/healthz", headers={"Host": host})
        assert response.status_code == 200
        assert response.json == {"status": "ok"}


@pytest.mark.parametrize(
    "path",
    [
        "/ACME/",
        "/..%2f/",
        "/../",
        "/%00/",
        "/acme%00/",
        "/" + "a" * 200 + "/",
        "/nope/",
        "/healthz/",
        "/-acme/",
        "/a/",
        "/",
        "//acme/",
        "/acme%0a/",
        "/%E2%80%AEacme/",
    ],
)
def test_unknown_or_malformed_slug_is_a_json_404(client, acme, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert "acme" not in response.get_data(as_text=True)


def test_unknown_tenant_and_unknown_route_look_the_same(client, acme):
    unknown_tenant = client.get("/nope/x")
    unknown_route = client.get("/acme/x")
    assert unknown_tenant.status_code == unknown_route.status_code == 404
    assert unknown_tenant.json == unknown_route.json


def test_unknown_slugs_are_not_cached(registry, client, acme):
    for number in range(300):
        client.get(f"/nope{number}/")
    assert registry.loaded_slugs() == []


def test_disabled_blueprint_has_no_routes(client, make_tenant):
    make_tenant("bare", blueprints=("status",))
    assert client.get("/bare/status").status_code == 200
    response = client.get("/bare/")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_broken_tenant_answers_503_while_others_keep_working(home, client, acme, globex):
    home.env_file(acme).write_text("SECRET_KEY=too-short\n")
    response = client.get("/acme/")
    assert response.status_code == 503
    assert response.json["error"] == "service_unavailable"
    assert "SECRET_KEY" not in response.get_data(as_text=True)
    assert client.get("/globex/").status_code == 200


def test_broken_config_module_answers_503_and_recovers_when_fixed(home, client, acme):
    good = home.config_file(acme).read_text()
    home.config_file(acme).write_text(good + "\n    this is not python\n")
    assert client.get("/acme/").status_code == 503
    home.config_file(acme).write_text(good)
    assert client.get("/acme/").status_code == 200


def test_disabled_tenant_answers_404_even_when_broken(home, client, acme):
    set_enabled(home, acme, False)
    home.env_file(acme).write_text("SECRET_KEY=too-short\n")
    response = client.get("/acme/")
    assert response.status_code == 404
    assert response.json == client.get("/nope/").json
    assert client.get("/", headers={"Host": "acme.localhost"}).status_code == 404


def test_enable_brings_a_tenant_back(home, client, acme):
    set_enabled(home, acme, False)
    assert client.get("/acme/").status_code == 404
    set_enabled(home, acme, True)
    assert client.get("/acme/").status_code == 200


def test_config_edit_is_picked_up(home, client, acme):
    path = home.config_file(acme)
    path.write_text(path.read_text().replace('"Acme Corp"', '"Acme Renamed"'))
    assert client.get("/acme/").json["name"] == "Acme Renamed"


def test_loaded_apps_are_bounded_least_recently_used_first(home, make_tenant):
    from tenantry.server.registry import TenantRegistry

    for slug in ("aa", "bb", "cc"):
        make_tenant(slug)
    registry = TenantRegistry(home, max_loaded=2, check_interval=0)
    for slug in ("aa", "bb", "cc"):
        assert registry.lookup(slug).app is not None
    assert registry.loaded_slugs() == ["bb", "cc"]
    registry.close()


def test_request_id_is_echoed_or_generated(client, acme):
    assert (
        client.get("/acme/", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    generated = client.get("/nope/", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["X-Request-ID"] not in ("", "bad id with spaces")
    ids = {client.get("/acme/").headers["X-Request-ID"] for _ in range(200)}
    assert len(ids) == 200 and all(re.fullmatch("[0-9a-f]{16}", i) for i in ids)
    random.seed(42)  # an endpoint module seeding the shared generator changes nothing
    first = client.get("/acme/").headers["X-Request-ID"]
    random.seed(42)
    assert client.get("/acme/").headers["X-Request-ID"] != first


def test_records_made_outside_a_logger_still_work_once_logging_is_configured():
    """logging.makeLogRecord (used by log receivers and handlers) calls the record factory
    with no name: tenantry's factory must take it, and fill in the process and thread."""
    import os

    from tenantry.server.log import configure_logging

    configure_logging()
    record = logging.makeLogRecord({"msg": "from elsewhere"})
    assert (record.getMessage(), record.process) == ("from elsewhere", os.getpid())
    assert logging.getLogger("other").makeRecord("other", 20, "f", 1, "m", (), None).process


def test_log_lines_carry_the_same_time_as_loggings_own_formatter():
    """The date and time are formatted once a second: every line must still read as
    logging's default would, milliseconds included, across second boundaries."""
    ours, stock = (
        _LineFormatter("%(asctime)s %(message)s"),
        logging.Formatter("%(asctime)s %(message)s"),
    )
    for created in (1_800_000_000.001, 1_800_000_000.999, 1_800_000_001.5, 1_800_000_000.25, 0.0):
        record = logging.makeLogRecord(
            {"msg": "x", "created": created, "msecs": created % 1 * 1000}
        )
        assert ours.format(record) == stock.format(record)
    record = logging.makeLogRecord({"msg": "x", "created": 1_800_000_000.5, "msecs": 500.0})
    assert ours.formatTime(record, "%H") == stock.formatTime(record, "%H")


def test_an_access_line_written_directly_reads_as_one_written_through_logging(
    client, acme, monkeypatch
):
    """While logging is as configure_logging() left it, an access line is written straight
    to tenantry's handler: it must read exactly as logging's own line would, and once a
    filter (or handler, or formatter) is added, the lines go through logging again."""
    configure_logging()
    handler = logging.getLogger("tenantry").handlers[0]
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.25)
    monkeypatch.setattr(time, "perf_counter", lambda: 7.0)
    level, root_handlers = access_log.level, logging.root.handlers[:]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    logging.root.handlers.clear()  # pytest's capture handlers: lines would go through them
    access_log.setLevel(logging.INFO)
    try:
        assert log._direct_handler() is handler
        client.get("/acme/", headers={"X-Request-ID": "req-1"})
        with monkeypatch.context() as patched:  # as sentry-sdk's logging integration does
            patched.setattr(logging.Logger, "callHandlers", lambda self, record: None)
            assert log._direct_handler() is None
        assert log._direct_handler() is handler
        access_log.addFilter(lambda record: True)
        assert log._direct_handler() is None
        client.get("/acme/", headers={"X-Request-ID": "req-1"})
    finally:
        access_log.filters.clear()
        access_log.setLevel(level)
        logging.root.handlers[:] = root_handlers
        handler.setStream(previous)
    direct, through_logging = stream.getvalue().splitlines()
    assert direct == through_logging
    assert direct.endswith(
        ",250 INFO tenant=acme request=req-1 tenantry.access: GET /acme/ 200 0.0ms client=-"
    )


def test_a_closed_body_runs_its_own_close_then_the_callback_even_if_close_fails():
    calls = []

    class Body:
        def __iter__(self):
            return iter([b"a", b"b"])

        def close(self):
            calls.append("body")
            raise OSError("gone")

    wrapped = call_on_close(Body(), lambda: calls.append("callback"), {})
    assert list(wrapped) == [b"a", b"b"]
    with pytest.raises(OSError):
        wrapped.close()
    assert calls == ["body", "callback"]
    plain = call_on_close([b"c"], lambda: calls.append("plain"), {})
    assert list(plain) == [b"c"]
    plain.close()
    assert calls[-1] == "plain"


def test_host_index_is_shared_on_disk_and_reruns_only_changed_modules(
    home, make_tenant, monkeypatch
):
    loads = []

    def counting_load(home, slug):
        loads.append(slug)
        return load_config_class(home, slug)

    monkeypatch.setattr(hosts, "load_config_class", counting_load)
    for slug in ("aa", "bb", "cc"):
        make_tenant(slug, hosts=(f"{slug}.example",))
    counting = TenantHome(home.root, home.database_url)
    HostIndex(counting).refresh()  # brings the saved index up to date

    loads.clear()
    fresh = HostIndex(counting)  # as a new worker would start
    fresh.refresh()
    assert loads == []
    assert fresh.by_host == {"aa.example": "aa", "bb.example": "bb", "cc.example": "cc"}

    config = home.config_file("bb")
    write_atomically(config, config.read_text().replace("bb.example", "new.example"))
    another = HostIndex(counting)
    another.refresh()
    assert loads == ["bb"]
    assert another.by_host["new.example"] == "bb"
    assert "bb.example" not in another.by_host


def test_no_request_lists_or_runs_config_modules_whatever_its_host(home, client, acme, monkeypatch):
    """The host index is refreshed by its own thread; requests only read it."""
    assert client.get("/", headers={"Host": "acme.localhost"}).json["tenant"] == "acme"
    in_requests = []
    request_thread = threading.current_thread()

    def watching(original):
        def wrapper(*args, **kwargs):
            if threading.current_thread() is request_thread:
                in_requests.append(original.__name__)
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(TenantHome, "slugs", watching(TenantHome.slugs))
    monkeypatch.setattr(hosts, "load_config_class", watching(load_config_class))
    for number in range(50):
        response = client.get("/", headers={"Host": f"unknown-{number}.example"})
        assert response.status_code == 404
    assert client.get("/", headers={"Host": "acme.localhost"}).status_code == 200
    assert in_requests == []


def test_the_access_line_is_written_once_the_body_is_sent(client, acme, caplog):
    caplog.handler.addFilter(RequestContextFilter())
    with caplog.at_level(logging.INFO, logger="tenantry.access"):
        response = client.get("/acme/", buffered=False)
        assert not [r for r in caplog.records if r.name == "tenantry.access"]
        assert b"".join(response.iter_encoded())
        response.close()
    lines = [record for record in caplog.records if record.name == "tenantry.access"]
    assert len(lines) == 1
    assert (lines[0].tenant, lines[0].getMessage().split()[:3]) == (
        "acme",
        ["GET", "/acme/", "200"],
    )


def test_a_platform_that_cannot_be_imported_fails_healthz_and_is_retried(
    client, acme, monkeypatch, caplog
):
    """The app factory (SQLAlchemy, the auth layer...) is imported when the first tenant
    app builds: if that import fails, it is the whole server's fault, not the tenant's:
    /healthz says so, and the tenant is built once the import works again."""
    import sys

    import tenantry.server.factory

    monkeypatch.setitem(sys.modules, "tenantry.server.factory", None)  # any import of it fails
    with caplog.at_level(logging.ERROR, logger="tenantry"):
        refused = client.get("/acme/")
    assert refused.status_code == 503 and refused.get_json()["error"] == "service_unavailable"
    health = client.get("/healthz")
    assert health.status_code == 503
    assert "platform" in health.get_json()["message"]
    assert any("cannot be imported" in record.getMessage() for record in caplog.records)
    monkeypatch.setitem(sys.modules, "tenantry.server.factory", tenantry.server.factory)
    assert client.get("/acme/").status_code == 200  # no file of acme changed
    assert client.get("/healthz").status_code == 200


def test_a_server_missing_a_platform_package_does_not_start(home, monkeypatch):
    import importlib.util

    from tenantry import wsgi

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "passlib" else real(name, *a)
    )
    with pytest.raises(RuntimeError, match="passlib not installed"):
        wsgi.dispatcher_application(home)
