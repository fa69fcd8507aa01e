"""`tenantry client` as a user runs it: the console script against a real gunicorn."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import zipfile

import click
import pytest

from tenantry.client.cli import client
from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-1"


@pytest.fixture
def database_url(monkeypatch):
    """SQLite only: the client sees HTTP, not the server's backend (both backends' routes
    are tested through the SDK and the API tests; this overrides the suite's fixture that
    runs a test on each)."""
    monkeypatch.delenv("TENANTRY_DATABASE_URL", raising=False)


@pytest.fixture
def server(home, acme):
    app = create_app(load_config_class(home, acme), home)
    create_user(app.extensions["tenantry.db"], guard_of(app).hash_password, "admin", PASSWORD,
                ["admin"])  # fmt: skip
    app.extensions["tenantry.db"].dispose()
    with GunicornServer(home, workers=2) as server:
        yield server


@pytest.fixture
def cli(server, tmp_path):
    """Run ``tenantry client --url ... --tenant acme ARGS`` with its own config dir."""
    config_dir = tmp_path / "config"

    def run(*args: str, stdin: bytes = b"", tenant: str = "acme"):
        return subprocess.run(
            [sys.executable, "-m", "tenantry.cli", "client", "--url", server.url,
             "--tenant", tenant, *args],
            input=stdin,
            capture_output=True,
            cwd=tmp_path,
            env={**__import__("os").environ, "TENANTRY_CONFIG_DIR": str(config_dir)},
        )  # fmt: skip

    run.config_dir = config_dir
    return run


def ok(result) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_login_keeps_a_private_token_and_the_commands_use_it(cli, tmp_path):
    ok(cli("login", "admin", "--password-stdin", stdin=PASSWORD.encode() + b"\n"))
    tokens = cli.config_dir / "tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert PASSWORD not in tokens.read_text()

    assert json.loads(ok(cli("--json", "me")))["tenant"] == "acme"

    (tmp_path / "report.csv").write_bytes(b"a,b\n1,2\n")
    stored = json.loads(ok(cli("--json", "put", "report.csv")))
    assert stored["size"] == 8
    assert json.loads(ok(cli("--json", "ls")))["total"] == 1
    assert json.loads(ok(cli("--json", "info", "report.csv")))["sha256"] == stored["sha256"]

    ok(cli("get", "report.csv", "copy.csv"))
    assert (tmp_path / "copy.csv").read_bytes() == b"a,b\n1,2\n"

    addr = ok(cli("link", "report.csv", "--ttl", "60")).strip()
    assert addr.startswith("/acme/cached-file?uid=")
    assert ok(cli("redeem", addr)) == "a,b\n1,2\n"
    assert cli("redeem", addr).returncode == 1

    ok(cli("datasets", "create", "sales", "--use", "bi", "--file", "report.csv"))
    listed = json.loads(ok(cli("--json", "datasets", "list", "--uses", "bi")))
    assert [d["name"] for d in listed["data"]] == ["sales"]
    ok(cli("datasets", "download", "sales", "--dest", "sales.zip"))
    with zipfile.ZipFile(tmp_path / "sales.zip") as archive:
        assert archive.namelist() == ["sales/report.csv"]

    ok(cli("datasets", "rm", "sales"))
    ok(cli("rm", "report.csv"))
    ok(cli("logout"))
    assert cli("me").returncode == 2


def test_exit_codes(cli):
    not_logged_in = cli("me")
    assert not_logged_in.returncode == 2
    assert b"not logged in" in not_logged_in.stderr

    wrong = cli("login", "admin", "--password-stdin", stdin=b"wrong-password\n")
    assert wrong.returncode == 1
    assert b"401 unauthorized" in wrong.stderr

    ok(cli("login", "admin", "--password-stdin", stdin=PASSWORD.encode() + b"\n"))
    missing = cli("get", "nothing.txt")
    assert missing.returncode == 1
    assert b"404 not_found" in missing.stderr
    assert cli("link", "x", "--ttl", "0").returncode == 2
    assert cli("frobnicate").returncode == 2
    assert cli("put", "missing-local-file").returncode == 2
    assert b"Traceback" not in missing.stderr + wrong.stderr


def test_use_and_uses_are_one_option_on_create_and_list(cli, tmp_path):
    ok(cli("login", "admin", "--password-stdin", stdin=PASSWORD.encode() + b"\n"))
    ok(cli("datasets", "create", "sales", "--use", "bi", "--use", "training"))
    ok(cli("datasets", "create", "clicks", "--uses", "bi", "--uses", "training"))
    ok(cli("datasets", "create", "notes", "--use", "bi"))

    by_use = ok(cli("--json", "datasets", "list", "--use", "bi", "--use", "training"))
    by_uses = ok(cli("--json", "datasets", "list", "--uses", "bi", "--uses", "training"))
    mixed = ok(cli("--json", "datasets", "list", "--use", "bi", "--uses", "training"))
    assert by_use == by_uses == mixed
    listed = json.loads(by_use)
    assert [d["name"] for d in listed["data"]] == ["clicks", "sales"]
    assert all(d["uses"] == ["bi", "training"] for d in listed["data"])

    for command in ("list", "create"):
        help_text = ok(cli("datasets", command, "--help"))
        assert "--use TEXT" in help_text
        assert "--uses" not in help_text  # the old spelling works but is not advertised


def test_json_after_the_subcommand_is_the_same_as_before_it(cli, tmp_path):
    ok(cli("login", "admin", "--password-stdin", stdin=PASSWORD.encode() + b"\n"))
    (tmp_path / "report.csv").write_bytes(b"a,b\n1,2\n")
    ok(cli("put", "report.csv"))
    ok(cli("datasets", "create", "sales", "--use", "bi", "--file", "report.csv"))

    for command in (["ls"], ["me"], ["info", "report.csv"], ["datasets", "list", "--use", "bi"],
                    ["datasets", "show", "sales"]):  # fmt: skip
        after = ok(cli(*command, "--json"))
        assert after == ok(cli("--json", *command)), command
        assert json.loads(after), command
    assert json.loads(ok(cli("ls", "--json")))["files"][0]["name"] == "report.csv"
    assert "1 files" in ok(cli("ls"))  # without the flag: text, not JSON

    # commands that change something print JSON too, whichever side the flag is on
    assert json.loads(ok(cli("datasets", "rm", "sales", "--json"))) == {"deleted": "sales"}
    assert json.loads(ok(cli("rm", "report.csv", "--json"))) == {"deleted": "report.csv"}
    assert json.loads(ok(cli("logout", "--json"))) == {"logged_out": True}


def test_every_client_subcommand_takes_json_after_it():
    def leaves(group, path=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from leaves(command, (*path, name))
            else:
                yield (*path, name), command

    commands = dict(leaves(client))
    assert len(commands) == 15
    missing = [" ".join(path) for path, command in commands.items()
               if not any("--json" in param.opts for param in command.params)]  # fmt: skip
    assert missing == []
