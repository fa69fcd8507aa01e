"""tenantry as a dependency: its wheel and a module's wheel install into a fresh virtualenv
with pip resolving every dependency from the package index (pyproject.toml's ranges, not
requirements.txt's pins), and the module's own tests pass there, on what pip chose; and
``tenantry --version`` says the version of ``tenantry.__version__``, its one place."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tenantry
from tenantry.cli import main

ROOT = Path(__file__).resolve().parent.parent
NOTES = ROOT / "examples" / "notes"
# What the module's tests need beside the two wheels: they run on tenantry.testing's
# fixtures, a pytest plugin (pytest is no runtime dependency of tenantry), with a timeout.
TEST_TOOLS = ("pytest", "pytest-timeout")
# Two wheels built, a venv made and filled from pip's cache: about a minute (a cold cache
# downloads the dependencies once more). Each step has its own bound too.
INSTALL_TIMEOUT = 900
# pip's words when the index could not be reached at all: only then the test skips.
UNREACHABLE = re.compile(
    r"(Failed to establish a new connection|Temporary failure in name resolution|Name or "
    r"service not known|Network is unreachable|ConnectTimeoutError)[^'\"\n]*"
)
# A working tree's leftovers, which no wheel is built from.
LEFTOVERS = shutil.ignore_patterns(
    "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"
)


def test_the_version_option_prints_the_package_version():
    """``tenantry --version`` of the dev install: the name and ``tenantry.__version__``,
    before any home is looked at."""
    result = CliRunner().invoke(main, ["--home", "/nonexistent", "--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"tenantry {tenantry.__version__}\n"


def clean_environment() -> dict[str, str]:
    """This process's environment less what would point a fresh venv back at the repo's
    sources or at this test run: PYTHONPATH, an active virtualenv, pytest's and tenantry's
    own variables. pip's settings stay: they are how this machine reaches the index."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith(("PYTEST_", "TENANTRY_"))
    }
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return environment


def run(command: list, *, timeout: float, cwd: Path | None = None) -> str:
    """Run ``command`` and return its output; skip if pip could not reach the package
    index, fail with the output on any other error."""
    command = [str(part) for part in command]
    try:
        process = subprocess.run(
            command,
            cwd=cwd,
            env=clean_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output or b""  # bytes, text=True or not
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        pytest.fail(f"over {timeout} s: {' '.join(command)}\n{output}")
    if process.returncode != 0:
        unreachable = UNREACHABLE.search(process.stdout)
        if unreachable is not None:
            pytest.skip(f"the package index cannot be reached: {unreachable.group(0)}")
        pytest.fail(f"exit {process.returncode}: {' '.join(command)}\n{process.stdout}")
    return process.stdout


def build_wheel(source: Path, wheels: Path) -> Path:
    """The wheel of the project in ``source``, built as pip builds one (isolated, from its
    pyproject.toml)."""
    before = set(wheels.glob("*.whl"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, source], timeout=300)
    (wheel,) = set(wheels.glob("*.whl")) - before
    return wheel


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new virtualenv with tenantry's and the notes module's wheels installed, and the
    test tools: every other package as pip resolved it from the index."""
    root = tmp_path_factory.mktemp("packaging")
    wheels = root / "wheels"
    wheels.mkdir()
    # Built from copies: the repo gets no build/ folder, and no stale one gets in a wheel.
    source = root / "tenantry"
    shutil.copytree(ROOT / "src", source / "src", ignore=LEFTOVERS)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    tenantry_wheel = build_wheel(source, wheels)
    assert tenantry_wheel.name == f"tenantry-{tenantry.__version__}-py3-none-any.whl"
    shutil.copytree(NOTES, root / "notes", ignore=LEFTOVERS)
    notes_wheel = build_wheel(root / "notes", wheels)

    venv = root / "venv"
    run([sys.executable, "-m", "venv", venv], timeout=120)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", tenantry_wheel, notes_wheel, *TEST_TOOLS], timeout=600)
    return venv


@pytest.mark.e2e
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_a_module_installed_beside_tenantry_passes_its_tests_on_what_pip_resolved(
    fresh_venv, tmp_path
):
    """The notes module's tests, run by the venv's pytest from a folder of their own: the
    repo's sources are not on the path and its pytest settings not read, so tenantry,
    tenantry.testing (the plugin) and the module are the installed wheels."""
    python = fresh_venv / "bin" / "python"
    run([python, "-m", "pip", "check"], timeout=60)
    shutil.copytree(NOTES / "tests", tmp_path / "tests", ignore=LEFTOVERS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # no settings of a folder above
    where = run(
        [python, "-c", "import tenantry, tenantry_notes; print(tenantry.__file__)"],
        cwd=tmp_path,
        timeout=60,
    )
    assert Path(where.strip()).is_relative_to(fresh_venv), where

    output = run(
        [
            fresh_venv / "bin" / "pytest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            tmp_path,
            "--timeout",
            "120",
            "-q",
            "tests",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    summary = output.strip().splitlines()[-1]  # "8 passed, 1 warning in 9.01s"
    counts = {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", summary)}
    written = sum(
        path.read_text().count("\ndef test_") for path in (tmp_path / "tests").glob("test_*.py")
    )
    assert counts.get("passed") == written, output
    assert set(counts) <= {"passed", "warning", "warnings"}, output  # none skipped


@pytest.mark.e2e
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_the_installed_command_prints_the_version_of_the_package(fresh_venv, tmp_path):
    """The console script of the installed wheel says ``tenantry.__version__``, which
    pyproject.toml reads too: the version is written in one place."""
    output = run([fresh_venv / "bin" / "tenantry", "--version"], cwd=tmp_path, timeout=60)
    assert output == f"tenantry {tenantry.__version__}\n"


@pytest.mark.e2e
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_the_installed_command_makes_a_module_from_its_package_data(fresh_venv, tmp_path):
    """``tenantry new module`` of the installed wheel: its templates are in the wheel."""
    output = run(
        [fresh_venv / "bin" / "tenantry", "new", "module", "stock"], cwd=tmp_path, timeout=60
    )
    assert "pip install -e tenantry-stock" in output
    made = tmp_path / "tenantry-stock"
    assert (made / "tenantry_stock" / "migrations" / "stock_0001_stock_items.py").is_file()
    assert (made / "tests" / "test_stock.py").is_file()
