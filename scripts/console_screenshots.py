"""The README's console screenshots, taken from a real server: a home of a few tenants
with users, files, audit entries and a backup, signed in as an operator in Debian's
chromium (Playwright). Writes docs/images/console-tenants.png and console-tenant.png.

    .venv/bin/python -m scripts.console_screenshots
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from tenantry.home.layout import TenantHome
from tenantry.ops.lifecycle import create_tenant, set_enabled, set_maintenance
from tenantry.platform.actions import add_user, change_user
from tenantry.platform.operators import Operators
from tenantry.server.hooks import HOOKS_CONFIG, SERVE_JOBS_ENV_VAR
from tests.server import GunicornServer

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
PASSWORD = "correct-horse-1"  # noqa: S105 - a throwaway home
MiB = 1024 * 1024
TENANTS = [  # slug, name, hosts, quota, MiB stored, users
    ("acme", "Acme Corp", ("acme.example.com",), 64 * MiB, 41, 3),
    ("globex", "Globex Corporation", ("globex.example.com",), 64 * MiB, 58, 2),
    ("initech", "Initech", (), 256 * MiB, 12, 4),
    ("hooli", "Hooli", ("hooli.example.com",), 32 * MiB, 3, 1),
    ("umbrella", "Umbrella Health", (), 128 * MiB, 96, 2),
    ("stark", "Stark Industries", ("stark.example.com",), 512 * MiB, 0, 1),
    ("wayne", "Wayne Enterprises", (), 64 * MiB, 7, 2),
]


def build(home: TenantHome) -> None:
    for slug, name, hosts, quota, _stored, users in TENANTS:
        create_tenant(home, slug, name=name, hosts=hosts, settings={"STORAGE_QUOTA": quota})
        add_user(home, slug, "admin", PASSWORD, "admin")
        for n in range(users - 1):
            add_user(home, slug, ["maria", "li.wei", "sam"][n % 3], PASSWORD, "user")
    Operators(home).add("ops", PASSWORD)


def fill(server: GunicornServer) -> None:
    for slug, _name, _hosts, _quota, stored, _users in TENANTS:
        login = {"username": "admin", "password": PASSWORD}
        token = httpx.post(f"{server.url}/{slug}/auth/login", json=login).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        for n in range(stored // 8 + (1 if stored % 8 else 0)):
            size = min(8, stored - 8 * n) * MiB
            name = f"report-{n:02d}.csv"
            httpx.put(f"{server.url}/{slug}/files/{name}", content=os.urandom(size), headers=auth)


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tenantry-shots-") as temp:
        home = TenantHome(Path(temp) / "home")
        (home.root / "config").mkdir(parents=True)
        build(home)
        server = GunicornServer(home, admin=True, env={SERVE_JOBS_ENV_VAR: "1"})
        server.argv[-1:-1] = ["--config", HOOKS_CONFIG]  # its job runner, as `tenantry serve`
        with server:
            fill(server)
            change_user(home, "acme", "li.wei", keep_an_admin=True, active=False)
            set_maintenance(home, "wayne", 600)
            set_enabled(home, "hooli", False)
            api = httpx.Client(base_url=server.admin_url)
            token = api.post("/api/login", json={"name": "ops", "password": PASSWORD})
            api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            job = api.post("/api/tenants/acme/backups").json()["job"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = [j["state"] for j in api.get("/api/tenants/acme/jobs").json()["data"]]
                if job and states and states[0] in ("succeeded", "failed"):
                    break
                time.sleep(0.5)
            OUT.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(server.admin_url + "/login")
                page.fill("input[name=name]", "ops")
                page.fill("input[name=password]", PASSWORD)
                page.click("button.primary")
                page.screenshot(path=str(OUT / "console-tenants.png"), full_page=True)
                page.goto(server.admin_url + "/tenants/acme")
                page.screenshot(path=str(OUT / "console-tenant.png"), full_page=True)
                browser.close()
    print(f"wrote {OUT / 'console-tenants.png'} and {OUT / 'console-tenant.png'}")


if __name__ == "__main__":
    main()
