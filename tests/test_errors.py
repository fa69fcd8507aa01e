"""Every error, from every layer, is the one JSON shape — with production settings."""

from __future__ import annotations

import logging
import shutil

import pytest
from flask import Blueprint, request
from flask_restful import Resource
from werkzeug.exceptions import Conflict

from tenantry.endpoint import TenantApi
from tenantry.server.log import RequestContextFilter


class Exploding(Resource):
    def get(self):
        raise RuntimeError("secret internals /etc/passwd")

    def post(self):
        return {"size": len(request.get_data())}

    def put(self):
        raise Conflict("No, that one exists.")


@pytest.fixture
def exploding_acme(registry, acme):
    """acme with one extra resource that fails in the ways real resources can."""
    app = registry.lookup(acme).app
    blueprint = Blueprint("exploding", __name__)
    TenantApi(blueprint).add_resource(Exploding, "/explode")
    app.register_blueprint(blueprint)
    app.config["MAX_CONTENT_LENGTH"] = 10
    assert app.config["PROPAGATE_EXCEPTIONS"] is False
    assert not app.debug and not app.testing
    return app


def assert_json_error(response, status, error):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.json
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_exception_in_a_resource_is_a_json_500_without_internals(client, exploding_acme):
    response = client.get("/acme/explode")
    assert_json_error(response, 500, "internal_error")
    assert "/etc/passwd" not in response.get_data(as_text=True)


def test_http_error_in_a_resource_keeps_its_message(client, exploding_acme):
    response = client.put("/acme/explode")
    assert_json_error(response, 409, "conflict")
    assert response.json["message"] == "No, that one exists."


def test_body_over_max_content_length_is_a_json_413(client, exploding_acme):
    assert client.post("/acme/explode", data=b"x" * 5).json == {"size": 5}
    assert_json_error(client.post("/acme/explode", data=b"x" * 50), 413, "payload_too_large")


def test_wrong_method_is_a_json_405_with_allow(client, acme):
    response = client.delete("/acme/status")
    assert_json_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_unknown_route_is_a_json_404(client, acme):
    assert_json_error(client.get("/acme/nothing/here"), 404, "not_found")


def test_healthz_wrong_method_is_a_json_405(client):
    assert_json_error(client.post("/healthz"), 405, "method_not_allowed")


def test_status_reports_ok_checks(client, acme):
    assert client.get("/acme/status").json == {
        "success": "OK",
        "tenant": "acme",
        "checks": {"database": "ok", "storage": "ok"},
    }


def test_status_names_the_failing_check(home, client, acme):
    assert client.get("/acme/status").status_code == 200
    shutil.rmtree(home.instance_dir(acme) / "storage")
    response = client.get("/acme/status")
    assert_json_error(response, 503, "service_unavailable")
    assert response.json["checks"] == {"database": "ok", "storage": "failed"}
    assert "storage" in response.json["message"]


def test_every_log_line_names_tenant_and_request(client, acme, caplog):
    caplog.handler.addFilter(RequestContextFilter())
    with caplog.at_level(logging.INFO, logger="tenantry"):
        client.get("/acme/status?token=hunter2", headers={"X-Request-ID": "req-42"})
    access = [r for r in caplog.records if r.name == "tenantry.access"]
    assert len(access) == 1
    assert access[0].tenant == "acme"
    assert access[0].request_id == "req-42"
    assert access[0].getMessage().startswith("GET /acme/status 200 ")
    assert "hunter2" not in caplog.text


def test_a_path_cannot_forge_log_lines(client, caplog):
    with caplog.at_level(logging.INFO, logger="tenantry"):
        client.get("/x%0aFAKE LINE")
    assert all("\n" not in record.getMessage() for record in caplog.records)


def test_a_tenant_that_cannot_start_is_named_on_its_error_line(client, home, acme, caplog):
    caplog.handler.addFilter(RequestContextFilter())
    path = home.config_file("acme")
    path.write_text(path.read_text() + '    BLUEPRINTS = ("landing", "wiki")\n')
    with caplog.at_level(logging.ERROR, logger="tenantry"):
        assert client.get("/acme/").status_code == 503
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert errors and all(record.tenant == "acme" for record in errors)


def test_status_asks_the_database_about_once_a_second_and_sees_storage_every_time(
    home, client, acme
):
    from tests.server import poll_until
    from tests.test_auth import Statements

    with Statements("SELECT 1") as probes:
        for _ in range(20):
            assert client.get("/acme/status").status_code == 200
    assert 1 <= probes.count <= 3
    with Statements("SELECT 1") as probes:
        poll_until(lambda: client.get("/acme/status") and probes.count >= 1, timeout=3)
    shutil.rmtree(home.instance_dir(acme) / "storage")
    assert client.get("/acme/status").json["checks"]["storage"] == "failed"


DATABASE_AWAY = """
from flask import Blueprint
from sqlalchemy.exc import OperationalError

blueprint = Blueprint("{name}", __name__)


@blueprint.route("/away")
def away():
    raise OperationalError("SELECT 1", {{}}, Exception("connection to server was lost"))


@blueprint.route("/broken")
def broken():
    raise OperationalError("SELECT 1", {{}}, Exception("no such column: nope"))
"""


def test_a_database_that_does_not_answer_is_a_503_with_retry_after(
    client, make_tenant, write_module
):
    """A database restarting (make chaos restarts PostgreSQL) is a 503 the client may
    retry; a query that is wrong is still the 500 it is."""
    module = write_module(DATABASE_AWAY)
    make_tenant("acme", blueprints=("landing", module))
    away = client.get("/acme/away")
    assert (away.status_code, away.headers["Retry-After"]) == (503, "5")
    assert away.json["error"] == "service_unavailable" and "database" in away.json["message"]
    assert client.get("/acme/broken").status_code == 500
