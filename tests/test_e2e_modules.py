"""A team's own endpoint module (the notes example) on a real 2-worker gunicorn, and the
README tutorial run exactly as written."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.server import GunicornServer, free_port
from tests.test_e2e_auth import PASSWORD, add_user, fresh
from tests.venvs import layered_venv

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL_MARK = "<!-- tutorial:notes -->"


def test_notes_are_served_in_one_tenant_and_not_another(home, make_tenant):
    make_tenant("shop", blueprints=("landing", "notes"))
    make_tenant("acme", blueprints=("landing",))
    add_user(home, "shop", "sam")
    add_user(home, "shop", "root", roles=("admin",))
    with GunicornServer(home, workers=2) as server:

        def token(username: str) -> dict[str, str]:
            response = fresh(
                "POST",
                f"{server.url}/shop/auth/login",
                json={"username": username, "password": PASSWORD},
            )
            assert response.status_code == 200, response.text
            return {"Authorization": f"Bearer {response.json()['access_token']}"}

        sam, root = token("sam"), token("root")
        created = fresh("POST", f"{server.url}/shop/notes", json={"text": "milk"}, headers=sam)
        assert created.status_code == 201, created.text
        # Every worker sees it: each request on its own connection.
        for _ in range(6):
            listed = fresh("GET", f"{server.url}/shop/notes", headers=sam)
            assert listed.json()["notes"] == [created.json()]
        assert fresh("GET", f"{server.url}/shop/notes/all", headers=sam).status_code == 403
        summary = fresh("GET", f"{server.url}/shop/notes/all", headers=root).json()
        assert list(summary["users"].values()) == [1]
        assert set(server.worker_pids()) and len(server.worker_pids()) == 2

        for _ in range(4):
            missing = fresh("GET", f"{server.url}/acme/notes", headers=sam)
            assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        assert fresh("GET", f"{server.url}/acme/auth/me", headers=sam).status_code == 401
        shop_paths = httpx.get(f"{server.url}/shop/openapi.json").json()["paths"]
        acme_paths = httpx.get(f"{server.url}/acme/openapi.json").json()["paths"]
        assert {"/notes", "/notes/{note_id}", "/notes/all"} <= set(shop_paths)
        assert not any(path.startswith("/notes") for path in acme_paths)
        assert "Traceback" not in server.log()


def tutorial_script() -> str:
    """The shell block that follows the tutorial mark in docs/modules.md."""
    readme = (ROOT / "docs" / "modules.md").read_text()
    after = readme[readme.index(TUTORIAL_MARK) + len(TUTORIAL_MARK) :]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match is not None, "no ```sh block after the tutorial mark"
    return match.group(1)


@pytest.fixture(scope="module")
def tutorial_bin(tmp_path_factory) -> Path:
    """The ``bin`` of a virtualenv of the test's own layered over the one running the
    tests (whose packages it sees through a .pth file), with a ``tenantry`` command of its
    own: the tutorial's ``pip install -e`` installs the example there, and the server it
    starts runs on that interpreter, so it serves what the tutorial installed. The tests
    running beside this one never see the example reinstalled under them."""
    return layered_venv(tmp_path_factory.mktemp("tutorial-venv"))


def test_the_readme_tutorial_runs_as_written(home, tutorial_bin):
    script = tutorial_script()
    port = free_port()
    assert "127.0.0.1:8000" in script
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    env = {
        **os.environ,
        "TENANTRY_HOME": str(home.root),
        "PATH": f"{tutorial_bin}{os.pathsep}{os.environ['PATH']}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    # Its own process group: a server the script started dies with it, even on failure.
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stdout + stderr
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert '"text": "buy milk"' in lines[0]
    assert '"notes": [{"id": 1, "text": "buy milk"' in lines[1]
    assert '"error": "not_found"' in lines[2]
    job = json.loads(lines[3])
    assert (job["name"], job["state"], job["result"]) == (
        "summarise_notes",
        "succeeded",
        {"notes": 1, "words": 2},
    )
