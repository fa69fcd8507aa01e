"""The operator console in a real browser: Playwright driving Debian's ``chromium`` (a
browser download is not possible everywhere, so the machine's own is used) against a real
gunicorn serving the tenants and the admin address.

Every page the tests open is watched: no console error, no uncaught page error, and no
request to anything but the admin address (the console loads nothing from elsewhere).
Where chromium is missing the tests are skipped with that reason, except in CI, where
``.ci/run`` installs it and a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import httpx
import pytest

from tenantry.home.layout import TenantHome
from tenantry.ops.lifecycle import create_tenant
from tenantry.platform.actions import add_user
from tenantry.platform.operators import Operators
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """acme (admin alice, user bob) and globex; operators ops and a read-only viewer."""
    root = tmp_path_factory.mktemp("console") / "home"
    (root / "config").mkdir(parents=True)
    home = TenantHome(root)
    create_tenant(home, "acme", name="Acme Corp", hosts=("acme.example",))
    create_tenant(home, "globex", name="Globex")
    add_user(home, "acme", "alice", PASSWORD, "admin")
    add_user(home, "acme", "bob", PASSWORD, "user")
    Operators(home).add("ops", PASSWORD)
    Operators(home).add("viewer", PASSWORD, read_only=True)
    with GunicornServer(home, admin=True) as server:
        yield server


class Watched:
    """A page whose console errors, page errors and requests are recorded."""

    def __init__(self, page, origin: str):
        self.page, self.origin = page, origin
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", lambda r: self.requests.append(r.url))

    def check(self) -> None:
        assert self.errors == []
        elsewhere = [url for url in self.requests if not url.startswith(self.origin + "/")]
        assert elsewhere == []


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    watched = Watched(context.new_page(), server.admin_url)
    yield watched
    context.close()
    watched.check()


def sign_in(watched: Watched, url: str, name: str = "ops") -> None:
    watched.page.goto(url)
    watched.page.fill("input[name=name]", name)
    watched.page.fill("input[name=password]", PASSWORD)
    watched.page.click("button.primary")


def test_sign_in_shows_the_tenants_table_and_its_search(page, server):
    page.page.goto(server.admin_url + "/")
    assert page.page.url.startswith(server.admin_url + "/login")
    page.page.fill("input[name=name]", "ops")
    page.page.fill("input[name=password]", "wrong password!!")
    page.page.click("button.primary")
    assert "wrong operator name or password" in page.page.inner_text(".error")
    sign_in(page, server.admin_url + "/login")
    assert page.page.url == server.admin_url + "/tenants"
    slugs = page.page.locator("#tenants a.slug").all_inner_texts()
    assert slugs == ["acme", "globex"]
    acme = page.page.locator("#tenants tbody tr").first
    assert acme.locator("td.num").inner_text() == "2"  # users
    assert "serving" in acme.inner_text()
    page.page.fill("input[name=q]", "GLOB")
    page.page.click(".search button")
    assert page.page.locator("#tenants a.slug").all_inner_texts() == ["globex"]
    page.page.fill("input[name=q]", "acme.example")  # hosts are searched too
    page.page.click(".search button")
    assert page.page.locator("#tenants a.slug").all_inner_texts() == ["acme"]


def test_create_a_tenant_through_the_form_and_it_is_served(page, server):
    sign_in(page, server.admin_url + "/tenants/new")
    assert page.page.url == server.admin_url + "/tenants/new"
    page.page.fill("input[name=slug]", "initech")
    page.page.fill("input[name=name]", "Initech")
    page.page.fill("input[name=hosts]", "initech.example")
    page.page.uncheck("input[value=datasets]")
    page.page.click("button.primary")
    assert page.page.url == server.admin_url + "/tenants/initech"
    assert "Initech" in page.page.inner_text("h1")
    deadline = time.monotonic() + 2
    while httpx.get(f"{server.url}/initech/status").status_code != 200:
        assert time.monotonic() < deadline, "the new tenant was not served within 2 s"
        time.sleep(0.05)
    audit = page.page.locator("#audit tbody tr").first.inner_text()
    assert "operator:ops" in audit and "tenant.create" in audit
    # The same slug again: the form says why, nothing changes.
    page.page.goto(server.admin_url + "/tenants/new")
    page.page.fill("input[name=slug]", "initech")
    page.page.click("button.primary")
    assert "exists" in page.page.inner_text(".error")


def test_disable_a_user_from_the_tenant_page(page, server):
    login = {"username": "bob", "password": PASSWORD}
    assert httpx.post(f"{server.url}/acme/auth/login", json=login).status_code == 200
    sign_in(page, server.admin_url + "/tenants/acme")
    row = page.page.locator("#users tbody tr", has_text="bob")
    row.locator("button", has_text="Disable").click()
    assert "bob: disabled" in page.page.inner_text(".notice")
    assert "disabled" in page.page.locator("#users tbody tr", has_text="bob").inner_text()
    assert httpx.post(f"{server.url}/acme/auth/login", json=login).status_code == 401
    assert "chain holds" in page.page.inner_text("#chain")
    row = page.page.locator("#users tbody tr", has_text="bob")
    row.locator("button", has_text="Enable").click()
    assert httpx.post(f"{server.url}/acme/auth/login", json=login).status_code == 200


def test_a_read_only_operator_sees_no_change_and_cannot_post_one(page, server):
    sign_in(page, server.admin_url + "/tenants/acme", name="viewer")
    assert page.page.locator("#users button").count() == 0
    assert page.page.locator("form.actions").count() == 0
    cookies = {c["name"]: c["value"] for c in page.page.context.cookies()}
    answer = httpx.post(
        f"{server.admin_url}/tenants/acme/state",
        data={"action": "disable", "csrf": cookies["tenantry_csrf"]},
        cookies=cookies,
    )
    assert answer.status_code == 403
    assert httpx.get(f"{server.url}/acme/status").status_code == 200


def test_a_form_without_its_csrf_token_is_refused(page, server):
    sign_in(page, server.admin_url + "/tenants/globex")
    cookies = {c["name"]: c["value"] for c in page.page.context.cookies()}
    for data in ({"action": "disable"}, {"action": "disable", "csrf": "x" * 43}):
        answer = httpx.post(f"{server.admin_url}/tenants/globex/state", data=data, cookies=cookies)
        assert answer.status_code == 403
        assert "CSRF token is missing or wrong" in answer.text  # a page of the console
        assert answer.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{server.url}/globex/status").status_code == 200
    session = cookies["tenantry_console"]
    attributes = next(c for c in page.page.context.cookies() if c["name"] == "tenantry_console")
    assert attributes["httpOnly"] and attributes["sameSite"] == "Strict" and session


def test_the_console_reads_with_javascript_off_and_sends_its_csp(browser, server):
    context = browser.new_context(java_script_enabled=False)
    watched = Watched(context.new_page(), server.admin_url)
    try:
        response = watched.page.goto(server.admin_url + "/login")
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        sign_in(watched, server.admin_url + "/login")
        assert watched.page.locator("#tenants a.slug").count() >= 2
        watched.page.click("text=acme")
        assert watched.page.locator("#users tbody tr").count() == 2
    finally:
        context.close()
    watched.check()


def test_the_admin_address_and_the_tenants_address_stay_apart(server):
    assert httpx.get(f"{server.url}/login").status_code == 404
    assert httpx.get(f"{server.url}/tenants").status_code == 404
    assert httpx.get(f"{server.admin_url}/acme/status").status_code == 404


def test_hostile_console_input_is_refused_with_a_page_or_an_error_never_a_500(server):
    with httpx.Client(base_url=server.admin_url, timeout=30) as client:
        client.get("/login")
        csrf = client.cookies["tenantry_csrf"]
        assert (
            client.post(
                "/login", data={"csrf": csrf, "name": "ops\0", "password": "x" * 5000}
            ).status_code
            == 200
        )  # the form again, saying why
        signed = client.post("/login", data={"csrf": csrf, "name": "ops", "password": PASSWORD})
        assert signed.status_code == 302
        answers = [
            client.post("/tenants/new", data={"csrf": csrf, "slug": "../etc", "name": "x"}),
            client.post("/tenants/new", data={"csrf": csrf, "slug": "nul-name", "name": "a\0b"}),
            client.post("/tenants/new", data={"csrf": csrf, "slug": "long", "name": "n" * 300}),
            client.post("/tenants/new", data={"csrf": csrf, "slug": "x" * 100}),
            client.post("/tenants/new", data={"csrf": csrf, "slug": "big", "name": "b" * 70000}),
            client.post(
                "/tenants/new",
                content=b"\xff\xfe" * 100,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
            client.post("/tenants/nope/state", data={"csrf": csrf, "action": "disable"}),
            client.post("/tenants/acme/state", data={"csrf": csrf, "action": "explode"}),
            client.post("/tenants/acme/users/nobody", data={"csrf": csrf, "action": "disable"}),
            client.post("/tenants/acme/users/alice", data={"csrf": csrf, "action": "delete"}),
            client.get("/tenants?page=-1&q=%00"),
            client.get("/tenants?page=99999999999"),
            client.get("/tenants/..%2f..%2fetc"),
            client.get("/login?next=//evil.example/x"),
        ]
        statuses = [answer.status_code for answer in answers]
        assert all(status < 500 for status in statuses), statuses
        assert statuses[4] == 413
        assert "Traceback" not in "".join(answer.text for answer in answers)
        for slug in ("etc", "nul-name", "long", "big"):
            assert client.get(f"/tenants/{slug}").status_code == 404
        # After sign-in, `next` sends only to a path of this address.
        client.cookies.delete("tenantry_console")
        client.get("/login")
        csrf = client.cookies["tenantry_csrf"]
        sent = client.post(
            "/login",
            data={"csrf": csrf, "name": "ops", "password": PASSWORD, "next": "//evil.example/"},
        )
        assert sent.headers["location"] == "/tenants"
    assert "Traceback" not in server.log_path.read_text()


def test_a_body_that_stops_arriving_at_the_admin_address_ends_in_408(server):
    """As on the tenants' address: a sign-in whose body stalls is given up after the idle
    limit, and the admin address answers others meanwhile."""
    from tenantry.server.bodies import BODY_IDLE_SECONDS

    sock = socket.create_connection(("127.0.0.1", server.admin_port), timeout=30)
    try:
        sock.sendall(
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        assert httpx.get(f"{server.admin_url}/api/openapi.json").status_code == 200
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        assert data.split(b" ", 2)[1] == b"408", data
        assert time.monotonic() - started >= BODY_IDLE_SECONDS - 2
    finally:
        sock.close()
