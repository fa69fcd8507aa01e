"""``tenantry new module NAME``: what it refuses (exit 2, nothing written), what it makes
(ruff-clean with tenantry's settings), and the round trip: the package it made installs,
passes its own tests, and serves its routes from a real ``tenantry serve``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import tenantry
from tenantry.cli import main
from tenantry.modules import scaffold
from tenantry.modules.scaffold import MAX_LENGTH, RESERVED, ScaffoldError, new_module
from tests.server import free_port
from tests.venvs import layered_venv

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).with_name("ruff")


def run_new(*args: str):
    """``tenantry new module ARGS`` in-process, with a home that does not exist (it needs
    none)."""
    return CliRunner().invoke(main, ["--home", "/nonexistent/home", "new", "module", *args])


def everything_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# -- refused: exit 2, nothing written -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a",
        "Inventory",
        "1stock",
        "in-ventory",
        "inv entory",
        "stock__levels",
        "stock_",
        "_stock",
        "a" * (MAX_LENGTH + 1),
        "../escape",
        "landing",
        "status",
        "auth",
        "files",
        "datasets",
        "links",
        "openapi",
        "users",  # the built-in /users route
        "healthz",  # the platform's health check on a tenant's own host
        "jwt_keys",  # JWT_KEYS_MAX_NAME_LENGTH: a setting of the platform's
        "tenantry_extra",
    ],
)
def test_a_bad_name_exits_2_and_writes_nothing(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    for args in ((name,), (name, "--dir", str(tmp_path / "pkg"))):
        result = run_new(*args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: "), result.output
        assert everything_in(tmp_path) == []


def test_the_longest_name_is_taken(tmp_path):
    assert new_module("a" * MAX_LENGTH, tmp_path / "pkg").is_dir()


def test_the_name_of_an_installed_module_is_refused(tmp_path, monkeypatch):
    installed = [EntryPoint("inventory", "tenantry_inventory", "tenantry.endpoints")]
    monkeypatch.setattr(scaffold, "entry_points", lambda group: installed)
    result = run_new("inventory", "--dir", str(tmp_path / "pkg"))
    assert result.exit_code == 2
    assert "already registers the endpoint module 'inventory'" in result.output
    assert everything_in(tmp_path) == []


def test_a_target_in_the_way_exits_2_and_is_left_as_it_was(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    taken = tmp_path / "tenantry-inventory"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    result = run_new("inventory")  # the default target
    assert result.exit_code == 2
    assert "tenantry-inventory is a folder that is not empty" in result.output
    a_file = tmp_path / "a-file"
    a_file.write_text("mine too")
    result = run_new("inventory", "--dir", str(a_file))
    assert result.exit_code == 2
    assert "is a file" in result.output
    assert everything_in(tmp_path) == [
        "a-file",
        "tenantry-inventory",
        "tenantry-inventory/notes.txt",
    ]
    assert (taken / "notes.txt").read_text() == "mine"


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    writes = []

    def failing_write(self, text, *args, **kwargs):
        writes.append(self)
        if len(writes) == 3:
            raise OSError(28, "No space left on device")
        return Path.write_bytes(self, text.encode())

    monkeypatch.setattr(Path, "write_text", failing_write)
    result = run_new("inventory", "--dir", str(tmp_path / "new" / "place" / "pkg"))
    assert result.exit_code == 1
    assert "could not make the package" in result.output
    assert "No space left on device" in result.output
    assert len(writes) == 3
    assert everything_in(tmp_path) == []  # not even the folders on the way


# -- made -----------------------------------------------------------------------------------


def test_the_package_is_made_and_the_next_commands_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tenantry-inventory").mkdir()  # an empty folder is as good as none
    result = run_new("inventory")
    assert result.exit_code == 0, result.output
    package = tmp_path / "tenantry-inventory"
    assert everything_in(package) == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "tenantry_inventory",
        "tenantry_inventory/__init__.py",
        "tenantry_inventory/blueprint.py",
        "tenantry_inventory/migrations",
        "tenantry_inventory/migrations/inventory_0001_inventory_items.py",
        "tenantry_inventory/models.py",
        "tenantry_inventory/resources.py",
        "tests",
        "tests/test_inventory.py",
    ]
    assert [path.name for path in tmp_path.iterdir()] == ["tenantry-inventory"]  # no staging
    assert "made the endpoint module inventory in tenantry-inventory:" in result.output
    assert "  tenantry_inventory/resources.py\n" in result.output
    assert result.output.endswith(
        "next:\n"
        "  pip install -e tenantry-inventory\n"
        "  pytest tenantry-inventory\n"
        "  tenantry tenants create shop --blueprints landing,inventory\n"
    )
    assert package.stat().st_mode & 0o777 == 0o777 & ~current_umask()

    project = tomllib.loads((package / "pyproject.toml").read_text())
    assert project["project"]["name"] == "tenantry-inventory"
    assert project["project"]["dependencies"] == [f"tenantry>={tenantry.__version__}"]
    entry_points = project["project"]["entry-points"]["tenantry.endpoints"]
    assert entry_points == {"inventory": "tenantry_inventory"}
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-data"] == {"tenantry_inventory": ["migrations/*.py"]}
    migration = package / "tenantry_inventory/migrations/inventory_0001_inventory_items.py"
    text = migration.read_text()
    assert 'revision = "inventory_0001"' in text
    assert 'branch_labels = ("inventory",)' in text
    assert "down_revision = None" in text
    for path in package.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_name_with_underscores_makes_a_valid_distribution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_new("stock_levels").exit_code == 0
    package = tmp_path / "tenantry-stock-levels"
    project = tomllib.loads((package / "pyproject.toml").read_text())
    assert project["project"]["name"] == "tenantry-stock-levels"
    resources = (package / "tenantry_stock_levels" / "resources.py").read_text()
    assert "class StockLevelsItemIn(BaseModel)" in resources
    assert '"STOCK_LEVELS_MAX_NAME_LENGTH"' in resources


def test_reserved_names_cover_every_builtin_route_and_blueprint(tenantry_tenant):
    """A module's route is /NAME and its blueprint NAME: neither may be a built-in's."""
    every = tenantry_tenant("every", blueprints=("landing", "status", "auth", "files", "datasets"))
    app = every.app
    segments = {rule.rule.split("/")[1] for rule in app.url_map.iter_rules()}
    names = {name for name in segments | set(app.blueprints) if scaffold.NAME.fullmatch(name)}
    assert names and names <= RESERVED, names - RESERVED
    with pytest.raises(ScaffoldError):
        scaffold.check_name(sorted(names)[0])


def test_the_generated_code_keeps_tenantrys_ruff_settings():
    """The package carries tenantry's own ruff settings (it may live anywhere)."""
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    made = tomllib.loads(scaffold.files("inventory")["pyproject.toml"])["tool"]["ruff"]
    for key in ("line-length", "target-version"):
        assert made[key] == ours[key]
    for key in ("select", "ignore"):
        assert made["lint"][key] == ours["lint"][key]
    assert made["lint"]["isort"]["known-first-party"] == ["tenantry", "tenantry_inventory"]


@pytest.mark.skipif(not RUFF.exists(), reason=f"no ruff beside {sys.executable}")
@pytest.mark.parametrize("name", ["ab", "inventory", "stock_levels", "q" * MAX_LENGTH])
def test_the_generated_code_passes_ruff(tmp_path, name):
    """Formatted and clean as made, for the shortest and the longest names too."""
    package = new_module(name, tmp_path / "pkg")
    for command in (["format", "--check", "--diff"], ["check"]):
        result = subprocess.run(
            [RUFF, *command, "--no-cache", "."],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_says_the_command_and_its_limits():
    readme = (ROOT / "docs" / "modules.md").read_text()
    assert "| `tenantry new module NAME [--dir PATH]` |" in readme
    assert f"The name is {scaffold.MIN_LENGTH} to {MAX_LENGTH} of" in readme


# -- the round trip -------------------------------------------------------------------------

E2E_NAME = "inventory"
SLUG = "shop"  # as the command's next steps say
# pip builds the editable install in an isolated environment: setuptools from the index.
INSTALL_TIMEOUT = 300


def environment(**extra: str) -> dict[str, str]:
    """This process's environment (its PYTHONPATH too: the same tenantry; and
    TENANTRY_DATABASE_URL, the backend of the test), less pytest's own variables."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    return {**kept, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def run(command: list, *, timeout: float, cwd: Path | None = None, **kwargs) -> str:
    process = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=kwargs.pop("env", None) or environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    assert process.returncode == 0, f"exit {process.returncode}: {command}\n{process.stdout}"
    return process.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """The package of ``tenantry new module inventory``, made by the command and installed
    (editable, without dependencies) in a virtualenv of the test's own: (its bin, the
    package). The developer's virtualenv never sees it."""
    root = tmp_path_factory.mktemp("scaffold")
    bin_dir = layered_venv(root / "venv")
    run([bin_dir / "tenantry", "new", "module", E2E_NAME], cwd=root, timeout=60)
    package = root / f"tenantry-{E2E_NAME}"
    run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-deps", "-e", package],
        timeout=INSTALL_TIMEOUT,
    )
    where = run(
        [bin_dir / "python", "-c", f"import tenantry_{E2E_NAME} as m; print(m.__file__)"],
        cwd=root,
        timeout=60,
    )
    assert Path(where.strip()).is_relative_to(package)
    return bin_dir, package


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_made_module_passes_its_tests_and_serves(home, installed, tmp_path):
    bin_dir, package = installed
    # Its own tests, by its venv's pytest, from its folder (its pyproject's settings), on
    # the backend of this run (TENANTRY_DATABASE_URL is set for PostgreSQL).
    assert environment().get("TENANTRY_DATABASE_URL") == home.database_url
    output = run(
        [bin_dir / "python", "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=package,
        timeout=300,
    )
    summary = output.strip().splitlines()[-1]  # "8 passed in 3.01s"
    counts = {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", summary)}
    written = (package / "tests" / f"test_{E2E_NAME}.py").read_text().count("\ndef test_")
    assert written > 0 and counts.get("passed") == written, output
    assert set(counts) <= {"passed", "warning", "warnings"}, output

    # A home's tenant enables it by the short name; a real server serves it.
    env = environment(TENANTRY_HOME=str(home.root))
    tenantry_command = bin_dir / "tenantry"
    run(
        [tenantry_command, "tenants", "create", SLUG, "--blueprints", f"landing,{E2E_NAME}"],
        env=env,
        timeout=120,
    )
    password = "alices-long-password"
    run(
        [tenantry_command, "users", "add", SLUG, "alice", "--role", "admin", "--password-stdin"],
        env=env,
        input=password + "\n",
        timeout=120,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    # gunicorn's control socket has one default path: concurrent servers would share it.
    serving = {**env, "GUNICORN_CMD_ARGS": "--no-control-socket"}
    server = subprocess.Popen(
        [tenantry_command, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        env=serving,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: gunicorn and its workers
    )
    try:
        wait_until_ready(server, url, tmp_path / "server.log")
        login = httpx.post(
            f"{url}/{SLUG}/auth/login", json={"username": "alice", "password": password}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        listed = httpx.get(f"{url}/{SLUG}/{E2E_NAME}", headers=auth)
        assert listed.status_code == 200, listed.text
        assert [(item["name"], item["created_by"]) for item in listed.json()["items"]] == [
            ("Your first item", None)  # the seed
        ]
        created = httpx.post(
            f"{url}/{SLUG}/{E2E_NAME}", json={"name": "crate of apples"}, headers=auth
        )
        assert created.status_code == 201, created.text
        assert created.json()["created_by"] == "alice"
        listed = httpx.get(f"{url}/{SLUG}/{E2E_NAME}", headers=auth).json()["items"]
        assert [item["name"] for item in listed] == ["Your first item", "crate of apples"]
        refused = httpx.post(f"{url}/{SLUG}/{E2E_NAME}", json={"name": ""}, headers=auth)
        assert refused.status_code == 400
        assert [error["field"] for error in refused.json()["fields"]] == ["name"]
        assert httpx.get(f"{url}/{SLUG}/{E2E_NAME}").status_code == 401
        paths = httpx.get(f"{url}/{SLUG}/openapi.json").json()["paths"]
        assert set(paths[f"/{E2E_NAME}"]) == {"get", "post"}
    finally:
        stop_group(server)
        log.close()


def wait_until_ready(server: subprocess.Popen, url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"tenantry serve exited {server.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"tenantry serve was not ready in {timeout} s:\n{log.read_text()}")


def stop_group(server: subprocess.Popen) -> None:
    """Stop the server and every process of its group (gunicorn's workers too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()
