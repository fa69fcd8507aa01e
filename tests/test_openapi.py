"""Each tenant's OpenAPI document names exactly the routes it has."""

from __future__ import annotations

import re

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tenantry.web.openapi import build_paths, undeclared_routes

SAMPLE = {"name": "report.csv", "username": "alice", "job_id": "0" * 32}


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: SAMPLE[m.group(1)], path)


@pytest.mark.parametrize(
    "blueprints",
    [
        ("landing", "status", "auth", "files", "datasets"),
        ("landing",),
        ("files",),
        ("datasets",),
        ("status",),
    ],
)
def test_spec_and_routes_match_both_ways(registry, make_tenant, blueprints):
    slug = make_tenant("t" + str(len(blueprints)) + blueprints[0][:3], blueprints=blueprints)
    app = registry.lookup(slug).app
    paths = build_paths(app)

    # every declared operation is a real route of this app
    adapter = app.url_map.bind("localhost")
    for path, operations in paths.items():
        for method, operation in operations.items():
            adapter.match(concrete(path), method=method.upper())
            declared = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (path, method)

    # every real route (bar OPTIONS and Flask's implicit HEAD) is declared
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"OPTIONS", "HEAD"}:
            assert method.lower() in paths[path], (method, path)


def test_a_tenant_without_files_lists_no_file_paths(registry, make_tenant):
    slug = make_tenant("plain", blueprints=("landing",))
    paths = build_paths(registry.lookup(slug).app)
    assert not any(path.startswith(("/files", "/cached-file", "/api/")) for path in paths)
    assert {"/", "/status", "/auth/login", "/openapi.json"} <= set(paths)


def test_an_undeclared_route_is_listed_with_its_path_parameters(registry, acme):
    app = registry.lookup(acme).app
    app.add_url_rule("/secret/<int:number>/<name>", "secret", lambda number, name: "x")
    assert undeclared_routes(app) == ["GET /secret/<int:number>/<name> (secret)"]
    operation = build_paths(app)["/secret/{number}/{name}"]["get"]
    assert operation["parameters"] == [
        {
            "name": "number",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        },
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    assert "head" not in build_paths(app)["/secret/{number}/{name}"]


def test_a_declared_path_without_a_route_would_be_caught(registry, acme):
    adapter = registry.lookup(acme).app.url_map.bind("localhost")
    with pytest.raises((NotFound, MethodNotAllowed)):
        adapter.match("/files/report.csv/nothing", method="GET")


def test_openapi_json_is_public_and_names_the_prefix(client, acme):
    spec = client.get("/acme/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    assert spec["servers"] == [{"url": "/acme"}]
    assert "/files/{name}" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/auth/me"]["get"]["security"] == [{"bearer": []}]
    assert spec["paths"]["/auth/me"]["get"]["responses"]["401"]["content"]


def test_openapi_under_host_routing_has_root_server(client, acme):
    spec = client.get("/openapi.json", headers={"Host": "acme.localhost"}).json
    assert spec["servers"] == [{"url": "/"}]
