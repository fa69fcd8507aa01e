"""The README's signup flow with ``PlatformClient`` (section "Operating tenantry") runs as
printed, against a real server with the admin address."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tenantry.home.layout import DATABASE_URL_ENV_VAR
from tenantry.platform.operators import Operators
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url(monkeypatch):
    """SQLite only: the README's example, not the database, is under test
    (tests/test_e2e_platform_api.py runs the API on both databases)."""
    monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
    return None


README = Path(__file__).resolve().parent.parent / "README.md"


def signup_block() -> str:
    text = README.read_text()
    section = text[text.index("## Operating tenantry") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readmes_signup_flow_creates_a_tenant_its_admin_can_use(home, monkeypatch):
    Operators(home).add("signup-bot", "bot-password-1")
    with GunicornServer(home, admin=True) as server:
        monkeypatch.setenv("TENANTRY_ADMIN_URL", server.admin_url)
        monkeypatch.setenv("SIGNUP_BOT_PASSWORD", "bot-password-1")
        namespace: dict = {}
        exec(compile(signup_block(), str(README), "exec"), namespace)  # noqa: S102
        sign_up = namespace["sign_up"]
        assert sign_up("initech", "Initech", "peter", "peter-password-1") is True
        login = {"username": "peter", "password": "peter-password-1"}
        deadline = time.monotonic() + 2
        while httpx.post(f"{server.url}/initech/auth/login", json=login).status_code != 200:
            assert time.monotonic() < deadline, "the new tenant's admin cannot log in"
            time.sleep(0.05)
        assert sign_up("initech", "Initech again", "paul", "paul-password-1") is False
