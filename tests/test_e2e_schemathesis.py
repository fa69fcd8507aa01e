"""Schemathesis fuzzes each tenant's own OpenAPI document against a real gunicorn.

Bounded (a fixed seed, few examples per operation) so the suite stays fast. One check is
left out: "schema-valid request rejected" (positive_data_acceptance) expects every
schema-valid request to succeed, but the contract itself requires 400 for rules no schema
expresses, such as a dataset naming a file that does not exist.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-1"
EXAMPLES = "15"
SLUGS = ("acme", "globex", "plain", "shop")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tenantry.home.layout import TenantHome
    from tenantry.ops.lifecycle import create_tenant

    root = tmp_path_factory.mktemp("schemathesis-home")
    home = TenantHome(root)
    create_tenant(home, "acme", name="Acme Corp", hosts=("acme.localhost",))
    create_tenant(home, "globex", name="Globex")
    create_tenant(home, "plain", name="Plain", blueprints=("landing",))
    # The notes example: its bodies and answers are pydantic models.
    create_tenant(home, "shop", name="Shop", blueprints=("landing", "notes"))
    for slug in SLUGS:
        app = create_app(load_config_class(home, slug), home)
        database = app.extensions["tenantry.db"]
        create_user(database, guard_of(app).hash_password, "admin", PASSWORD, ["admin"])
        database.dispose()
    with GunicornServer(home, workers=2) as server:
        # Logged in before any fuzzing, which may lock "admin" out by guessing.
        server.tokens = {
            slug: httpx.post(
                f"{server.url}/{slug}/auth/login",
                json={"username": "admin", "password": PASSWORD},
            ).json()["access_token"]
            for slug in SLUGS
        }
        yield server


def run_schemathesis(server, slug: str, cwd, token: str | None) -> subprocess.CompletedProcess:
    base = f"{server.url}/{slug}"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
        "--url", base,
        "--max-examples", EXAMPLES,
        "--seed", "1",
        "--no-color",
        "--exclude-checks", "positive_data_acceptance",
    ]  # fmt: skip
    if token is not None:
        # logging out would revoke the token the rest of the run relies on
        argv += ["--header", f"Authorization: Bearer {token}", "--exclude-path", "/auth/logout"]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)


CASES = [
    pytest.param(slug, with_token, id=f"{'admin-token' if with_token else 'anonymous'}-{slug}")
    for slug in SLUGS
    for with_token in (False, True)
    # shop's own routes all want a token; anonymously it is what acme's runs cover
    if slug != "shop" or with_token
]


@pytest.mark.parametrize(("slug", "with_token"), CASES)
def test_the_api_keeps_its_own_spec(server, slug, with_token, tmp_path):
    token = server.tokens[slug] if with_token else None
    result = run_schemathesis(server, slug, tmp_path, token)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    assert "unhandled exception" not in server.log()
