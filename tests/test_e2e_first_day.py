"""A module author's first day on a real 2-worker gunicorn, on SQLite and PostgreSQL: an
ordinary blueprint is served and listed, OPENAPI_STRICT refuses it, a pydantic body's bad
field is a 400 naming it, ``tenants check`` warns and exits 0, and a module's seed runs
once however many workers build the tenant at once."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.server import GunicornServer
from tests.test_e2e_auth import fresh
from tests.test_endpoint_modules import add_to_config, set_blueprints
from tests.test_first_day import PLAIN, SEEDED, TYPED

pytestmark = pytest.mark.e2e


def cli(home, *args: str) -> subprocess.CompletedProcess:
    """``tenantry ARGS`` as an operator runs it, in a process of its own."""
    env = {**os.environ, "TENANTRY_HOME": str(home.root), **modules_path()}
    if home.database_url:
        env["TENANTRY_DATABASE_URL"] = home.database_url
    return subprocess.run(
        [str(Path(sys.executable).parent / "tenantry"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def modules_path() -> dict[str, str]:
    """The folder of the test's modules, for the server's workers to import them from."""
    return {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p.endswith("modules"))}


def test_an_ordinary_blueprint_and_a_typed_one_on_a_real_server(home, make_tenant, write_module):
    plain, typed = write_module(PLAIN), write_module(TYPED)
    make_tenant("shop", blueprints=("landing", plain, typed))
    make_tenant("strict", blueprints=("landing", plain))
    make_tenant("other", blueprints=("landing",))
    add_to_config(home, "strict", "OPENAPI_STRICT = True")

    checked = cli(home, "tenants", "check", "shop")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"shop: warning: GET /plain ({plain}.plain) is not declared" in checked.stdout
    refused = cli(home, "tenants", "check", "strict")
    assert refused.returncode == 1 and "OPENAPI_STRICT is set" in refused.stdout

    with GunicornServer(home, workers=2, env=modules_path()) as server:
        for _ in range(4):  # each on its own connection: both workers answer
            assert fresh("GET", f"{server.url}/shop/plain?q=x").json() == {
                "tenant": "shop",
                "q": "x",
            }
            assert fresh("POST", f"{server.url}/shop/undeclared").status_code == 201
            strict = fresh("GET", f"{server.url}/strict/plain")
            assert (strict.status_code, strict.json()["error"]) == (503, "service_unavailable")
            missing = fresh("GET", f"{server.url}/other/plain")
            assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        paths = fresh("GET", f"{server.url}/shop/openapi.json").json()["paths"]
        assert {"/plain", "/plain/{number}", "/undeclared", "/orders"} <= set(paths)
        assert set(paths["/undeclared"]) == {"get", "post"}

        order = {"item": "pen", "quantity": 3, "ship_to": {"city": "Oslo"}}
        created = fresh("POST", f"{server.url}/shop/orders", json=order)
        assert created.status_code == 201 and created.json()["city"] == "Oslo"
        bad = fresh("POST", f"{server.url}/shop/orders", json={**order, "quantity": "many"})
        assert (bad.status_code, bad.json()["error"]) == (400, "bad_request")
        assert [error["field"] for error in bad.json()["fields"]] == ["quantity"]
        # The log says why the strict tenant is down; no request of the others failed.
        assert "OPENAPI_STRICT is set" in server.log()
        assert " 500 " not in server.log()


def test_a_seed_runs_once_when_both_workers_build_the_tenant_at_once(
    home, make_tenant, write_module
):
    seeded = write_module(SEEDED.replace("{upper}", "SEEDED"))
    make_tenant("shop", blueprints=("landing",))
    set_blueprints(home, "shop", ("landing", seeded))  # enabled, its tables not made yet
    add_to_config(home, "shop", "MAX_CONCURRENT_REQUESTS = 16")  # 8 at once: no 429
    make_tenant("created", blueprints=("landing", seeded))  # seeded before any request
    with GunicornServer(home, workers=2, env=modules_path()) as server:
        plans = fresh("GET", f"{server.url}/created/plans").json()
        assert plans == {"plans": ["basic", "created-own"]}

        def answered(_):
            return fresh("GET", f"{server.url}/shop/plans")

        # The first requests for shop: both workers build it (and make its tables) at once.
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(answered, range(24)))
        assert {answer.status_code for answer in answers} == {200}
        assert {tuple(a.json()["plans"]) for a in answers} == {("basic", "shop-own")}
        other = fresh("GET", f"{server.url}/created/plans").json()
        assert other == {"plans": ["basic", "created-own"]}  # its own rows, not shop's
        assert "Traceback" not in server.log()
