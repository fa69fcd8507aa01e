"""README's quickstart runs as written: the block is read from README.md (never copied
here) and run by bash, from a folder laid out like a fresh clone, on both backends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from tests.server import free_port

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- quickstart -->"
# What a clone holds that the block uses (`make setup`, then the venv it made).
CLONE = ("Makefile", "requirements.txt", "pyproject.toml", "src", "examples", "scripts", ".venv")


def quickstart_block() -> str:
    readme = (REPO / "README.md").read_text()
    assert readme.count(MARKER) == 1, "README.md needs exactly one quickstart marker"
    after = readme.split(MARKER, 1)[1]
    found = re.match(r"\s*```sh\n(.*?)\n```", after, re.DOTALL)
    assert found, "the quickstart marker must be followed by a ```sh block"
    return found.group(1)


def test_the_quickstart_block_runs_as_written(tmp_path, database_url):
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in CLONE:
        (clone / name).symlink_to(REPO / name)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TENANTRY_")}
    env["PORT"] = str(free_port())  # the block's default port may be taken on this machine
    if database_url:
        env["TENANTRY_DATABASE_URL"] = database_url
    block = quickstart_block()
    run = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the server it starts in the background is in its group
    )
    try:
        output, _ = run.communicate(timeout=120)
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait()
    log = (clone / "quickstart.log").read_text() if (clone / "quickstart.log").exists() else ""
    assert run.returncode == 0, f"{output}\n--- server log:\n{log}"
    assert '"tenant": "initech"' in output
    assert f"serving on port {env['PORT']}" in output
    assert (clone / "quickstart" / "config" / "initech.py").is_file()
    assert (clone / "from-link.csv").read_bytes() == (clone / "report.csv").read_bytes()
    backend = (clone / "quickstart" / "tenants" / ".backend").read_text()
    assert backend.startswith("postgresql" if database_url else "sqlite")
