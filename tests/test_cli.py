"""The tenantry command: what it writes, and its exit codes (0 ok, 1 check failed, 2 bad input)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys

import pytest

from tenantry.data.db import SCHEMA_REVISION, schema_name
from tenantry.data.users import find_user
from tenantry.home.env import read_secrets
from tenantry.home.loader import load_config_class
from tenantry.ops.lifecycle import create_tenant
from tenantry.ops.migrate import PARALLEL_MIGRATION_THRESHOLD
from tests import postgres
from tests.conftest import drop_database, revision_of


def test_create_writes_config_secret_wsgi_and_database(home, tenantry):
    result = tenantry(
        "tenants", "create", "acme", "--name", "Acme Corp", "--host", "acme.localhost"
    )
    assert result.exit_code == 0, result.output

    env_file = home.env_file("acme")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    secret = read_secrets(home, "acme")["SECRET_KEY"]
    assert len(secret.encode()) >= 32
    assert (home.instance_dir("acme") / "wsgi.py").is_file()
    assert (home.instance_dir("acme") / "storage").is_dir()
    assert revision_of(home, "acme") == SCHEMA_REVISION
    config_class = load_config_class(home, "acme")
    assert config_class.NAME == "Acme Corp"
    assert config_class.HOSTS == ("acme.localhost",)


def test_each_tenant_gets_a_fresh_secret(home, tenantry):
    for slug in ("acme", "globex", "initech"):
        assert tenantry("tenants", "create", slug).exit_code == 0
    secrets = {read_secrets(home, slug)["SECRET_KEY"] for slug in ("acme", "globex", "initech")}
    assert len(secrets) == 3


def test_create_refuses_an_existing_slug_without_touching_it(home, tenantry):
    tenantry("tenants", "create", "acme", "--name", "Original")
    env_before = home.env_file("acme").read_bytes()
    config_before = home.config_file("acme").read_bytes()

    result = tenantry("tenants", "create", "acme", "--name", "Impostor")

    assert result.exit_code == 2
    assert "already exists" in result.output
    assert home.env_file("acme").read_bytes() == env_before
    assert home.config_file("acme").read_bytes() == config_before


@pytest.mark.parametrize(
    "slug", ["Acme", "a", "1acme", "healthz", "acme_co", "../etc", "a" * 64, "acme.py", ""]
)
def test_create_refuses_an_invalid_slug_writing_nothing(home, tenantry, slug):
    result = tenantry("tenants", "create", slug)
    assert result.exit_code == 2
    assert not any(home.root.rglob("*.py"))
    assert not home.tenants_dir.exists() or not any(home.tenants_dir.iterdir())


def test_create_refuses_unknown_blueprints_and_bad_hosts(home, tenantry):
    assert tenantry("tenants", "create", "acme", "--blueprints", "landing,wiki").exit_code == 2
    assert tenantry("tenants", "create", "acme", "--host", "bad host").exit_code == 2
    assert not home.config_file("acme").exists()


def test_create_refuses_a_host_another_tenant_has(tenantry):
    assert tenantry("tenants", "create", "acme", "--host", "shared.example").exit_code == 0
    result = tenantry("tenants", "create", "globex", "--host", "shared.example")
    assert result.exit_code == 2
    assert "shared.example" in result.output


def test_list_json_describes_every_tenant(tenantry):
    tenantry("tenants", "create", "acme", "--name", "Acme Corp", "--blueprints", "landing")
    tenantry("tenants", "create", "globex")
    tenantry("tenants", "disable", "globex")

    result = tenantry("tenants", "list", "--json")

    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert rows[0] == {
        "slug": "acme",
        "name": "Acme Corp",
        "hosts": [],
        "blueprints": ["landing", "status", "auth"],
        "enabled": True,
        "maintenance": False,
    }
    assert rows[1]["slug"] == "globex" and rows[1]["enabled"] is False


def test_check_passes_for_healthy_tenants(tenantry):
    tenantry("tenants", "create", "acme")
    result = tenantry("tenants", "check")
    assert result.exit_code == 0
    assert "acme: ok" in result.output


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (None, ".env is missing"),
        ("OTHER=1\n", "SECRET_KEY is missing"),
        ("SECRET_KEY=short\n", "shorter than 32 bytes"),
        ("SECRET_KEY=changeme\n", "well-known default"),
    ],
)
def test_check_reports_bad_secrets_with_exit_1(home, tenantry, env, problem):
    tenantry("tenants", "create", "acme")
    if env is None:
        home.env_file("acme").unlink()
    else:
        home.env_file("acme").write_text(env)
    result = tenantry("tenants", "check", "acme")
    assert result.exit_code == 1
    assert problem in result.output


def test_check_reports_tenants_sharing_a_secret(home, tenantry):
    tenantry("tenants", "create", "acme")
    tenantry("tenants", "create", "globex")
    home.env_file("globex").write_bytes(home.env_file("acme").read_bytes())
    result = tenantry("tenants", "check")
    assert result.exit_code == 1
    assert "acme: SECRET_KEY is shared with globex" in result.output
    assert "globex: SECRET_KEY is shared with acme" in result.output


def test_check_reports_unknown_blueprints_and_loose_modes(home, tenantry):
    tenantry("tenants", "create", "acme")
    path = home.config_file("acme")
    path.write_text(path.read_text() + '    BLUEPRINTS = ("landing", "wiki")\n')
    home.env_file("acme").chmod(0o644)
    result = tenantry("tenants", "check")
    assert result.exit_code == 1
    assert "endpoint module 'wiki': unknown" in result.output
    assert "readable by others" in result.output


def test_unknown_tenant_is_bad_input(tenantry):
    for args in (
        ("tenants", "disable", "nope"),
        ("tenants", "enable", "nope"),
        ("tenants", "check", "nope"),
        ("tenants", "rotate-secret", "nope"),
        ("migrate", "nope"),
    ):
        result = tenantry(*args)
        assert result.exit_code == 2, args
        assert "nope" in result.output


def test_rotate_secret_changes_only_that_tenant_and_keeps_other_lines(home, tenantry):
    tenantry("tenants", "create", "acme")
    tenantry("tenants", "create", "globex")
    with home.env_file("acme").open("a") as env:
        env.write("EXTRA=kept\n")
    acme_before = read_secrets(home, "acme")["SECRET_KEY"]
    globex_before = read_secrets(home, "globex")["SECRET_KEY"]

    assert tenantry("tenants", "rotate-secret", "acme").exit_code == 0

    assert read_secrets(home, "acme")["SECRET_KEY"] != acme_before
    assert read_secrets(home, "acme")["EXTRA"] == "kept"
    assert read_secrets(home, "globex")["SECRET_KEY"] == globex_before
    assert stat.S_IMODE(home.env_file("acme").stat().st_mode) == 0o600


def test_migrate_brings_every_database_to_the_current_revision(home, make_tenant, tenantry):
    # More tenants than PARALLEL_MIGRATION_THRESHOLD: they migrate in parallel processes.
    slugs = [make_tenant(f"t{number:02d}") for number in range(PARALLEL_MIGRATION_THRESHOLD + 2)]
    for slug in slugs:
        drop_database(home, slug)
    result = tenantry("migrate")
    assert result.exit_code == 0, result.output
    for slug in slugs:
        assert f"{slug}: at revision {SCHEMA_REVISION}" in result.output
        assert revision_of(home, slug) == SCHEMA_REVISION


def test_console_script_usage_errors_exit_2(home):
    result = subprocess.run(
        [sys.executable, "-m", "tenantry.cli", "--home", str(home.root), "tenants", "frobnicate"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2


def test_users_add_list_disable(tenantry):
    tenantry("tenants", "create", "acme")
    added = tenantry(
        "users", "add", "acme", "alice", "--role", "admin", "--password-stdin",
        input="correct-horse-1\nignored second line\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "correct-horse-1" not in added.output

    listed = tenantry("users", "list", "acme", "--json")
    assert json.loads(listed.output) == [{"username": "alice", "roles": ["admin"], "active": True}]

    assert tenantry("users", "disable", "acme", "alice").exit_code == 0
    assert json.loads(tenantry("users", "list", "acme", "--json").output)[0]["active"] is False


def test_users_add_prompts_for_the_password_twice(tenantry):
    tenantry("tenants", "create", "acme")
    result = tenantry(
        "users", "add", "acme", "bob", "--role", "user", input="bob-password-1\nbob-password-1\n"
    )
    assert result.exit_code == 0, result.output
    assert "bob-password-1" not in result.output


def test_users_password_stdin_strips_only_the_newline(home, registry, tenantry, client):
    tenantry("tenants", "create", "acme")
    tenantry(
        "users", "add", "acme", "carol", "--role", "user", "--password-stdin",
        input=" spaced password \n",
    )  # fmt: skip
    response = client.post(
        "/acme/auth/login", json={"username": "carol", "password": " spaced password "}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (
            ("users", "add", "nope", "alice", "--role", "user", "--password-stdin"),
            "long-enough-1\n",
        ),
        (("users", "add", "acme", "alice", "--role", "user", "--password-stdin"), "short\n"),
        (
            ("users", "add", "acme", "al ice", "--role", "user", "--password-stdin"),
            "long-enough-1\n",
        ),
        (
            ("users", "add", "acme", "alice", "--role", "root", "--password-stdin"),
            "long-enough-1\n",
        ),
        (("users", "add", "acme", "dup", "--role", "user", "--password-stdin"), "long-enough-1\n"),
        (("users", "list", "nope"), None),
        (("users", "disable", "acme", "nobody"), None),
        (("users", "disable", "nope", "dup"), None),
    ],
)
def test_users_bad_input_exits_2_and_writes_nothing(tenantry, args, stdin):
    tenantry("tenants", "create", "acme")
    tenantry("users", "add", "acme", "dup", "--role", "user", "--password-stdin",
             input="long-enough-1\n")  # fmt: skip
    result = tenantry(*args, input=stdin)
    assert result.exit_code == 2, result.output
    names = [
        row["username"] for row in json.loads(tenantry("users", "list", "acme", "--json").output)
    ]
    assert names == ["dup"]


@pytest.mark.parametrize("database_url", [postgres.PARAM_ID], indirect=True)
def test_create_refuses_a_slug_whose_schema_outlived_its_tenant(home, make_tenant, tenantry):
    make_tenant("acme")
    shutil.rmtree(home.instance_dir("acme"))  # removed by hand; its schema is still there
    home.config_file("acme").unlink()
    result = tenantry("tenants", "create", "acme")
    assert result.exit_code == 2
    assert "tenant_acme" in result.output
    assert not home.config_file("acme").exists()
    assert not home.instance_dir("acme").exists()


@pytest.mark.parametrize("database_url", [postgres.PARAM_ID], indirect=True)
def test_a_failed_create_leaves_no_schema_behind_and_can_be_retried(home, monkeypatch):
    # The config module is written last, after the schema was made: fail right there.
    monkeypatch.setattr("tenantry.ops.lifecycle.CONFIG_MODULE", "{no_such_field}")
    with pytest.raises(KeyError):
        create_tenant(home, "acme")
    assert not home.instance_dir("acme").exists()
    assert postgres.tenant_schemas() == []
    monkeypatch.undo()
    create_tenant(home, "acme")
    assert revision_of(home, "acme") == SCHEMA_REVISION


@pytest.mark.parametrize("database_url", [postgres.PARAM_ID], indirect=True)
def test_long_slugs_get_schemas_of_their_own(home, make_tenant, add_user, registry):
    first, second = "a" * 62 + "x", "a" * 62 + "y"  # the same first 56 characters and more
    assert schema_name(first) != schema_name(second)
    assert len(schema_name(first)) <= 63
    make_tenant(first)
    make_tenant(second)
    add_user(first, "alice")
    app = registry.lookup(second).app
    assert find_user(app.extensions["tenantry.db"], "alice") is None
    assert sorted(postgres.tenant_schemas()) == sorted([schema_name(first), schema_name(second)])


def test_commands_import_modules_from_where_they_run_as_the_server_does(
    home, tmp_path, monkeypatch, tenantry
):
    """A module in the directory the command runs in: `tenants create` and `check` find
    it there, as `tenantry serve` (gunicorn) does, with no PYTHONPATH."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "herehere_mod.py").write_text(
        "from flask import Blueprint\nblueprint = Blueprint('herehere_mod', __name__)\n"
    )
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(folder))])
    created = tenantry("tenants", "create", "here", "--blueprints", "landing,herehere_mod")
    assert created.exit_code == 0, created.output
    assert tenantry("tenants", "check", "here").exit_code == 0
