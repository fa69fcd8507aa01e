"""Operator details: the home's backend record, read-only commands, the
wrong-folder hint, user management (CLI and admin routes, the last-admin rule) and
private files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from tenantry.cli import main
from tenantry.data.users import LastAdmin, has_active_admin, update_user
from tenantry.home.layout import DATABASE_URL_ENV_VAR, HomeError, TenantHome, describe_backend
from tenantry.ops.lifecycle import create_tenant
from tests import postgres
from tests.conftest import bearer
from tests.server import GunicornServer, free_port, poll_until

PASSWORD = "correct-horse-1"


def snapshot(root) -> dict[str, tuple]:
    """Every file and folder under ``root`` with its size, mtime (ns) and mode."""
    found = {}
    for folder, folders, files in os.walk(root):
        for name in [".", *folders, *files]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return found


def run(home: TenantHome, *args: str, input: str | None = None, url: str | None = None):
    """``tenantry --home HOME ARGS`` with TENANTRY_DATABASE_URL set to ``url`` (or unset)."""
    env = {DATABASE_URL_ENV_VAR: url}  # None unsets it for the run
    return CliRunner().invoke(main, ["--home", str(home.root), *args], input=input, env=env)


def needs_postgres():
    reason = postgres.unreachable_reason()
    if reason is not None:
        pytest.skip(reason)


# The backend record


def test_the_first_create_records_the_backend(home, tenantry):
    assert not home.backend_file.exists()
    assert tenantry("tenants", "create", "acme").exit_code == 0
    recorded = home.backend_file.read_text().strip()
    assert recorded == describe_backend(home.database_url)
    if home.database_url:
        assert recorded.startswith("postgresql") and ":@" not in recorded


READ_ONLY = (
    ("tenants", "list"),
    ("tenants", "list", "--json"),
    ("tenants", "check"),
    ("tenants", "check", "acme"),
    ("users", "list", "acme"),
    ("users", "list", "acme", "--json"),
)


@pytest.mark.parametrize("legacy", [False, True], ids=["recorded", "inferred"])
def test_a_sqlite_home_refuses_a_postgresql_url_before_touching_anything(tmp_path, legacy):
    needs_postgres()
    home = TenantHome(tmp_path / "home")
    create_tenant(home, "acme")
    assert run(home, "users", "add", "acme", "alice", "--role", "admin", "--password-stdin",
               input=PASSWORD + "\n").exit_code == 0  # fmt: skip
    if legacy:  # a home made before the record: its tenant.db says SQLite
        home.backend_file.unlink()
    before = snapshot(home.root)
    url = postgres.session_url()
    commands = (*READ_ONLY, ("tenants", "create", "initech"), ("migrate",), ("gc",),
                ("users", "add", "acme", "bob", "--role", "user", "--password-stdin"),
                ("tenants", "disable", "acme"))  # fmt: skip
    for args in commands:
        result = run(home, *args, input=PASSWORD + "\n", url=url)
        assert result.exit_code == 2, (args, result.output)
        assert "sqlite" in result.output and describe_backend(url) in result.output, args
    assert snapshot(home.root) == before
    assert postgres.tenant_schemas() == []


@pytest.mark.parametrize("legacy", [False, True], ids=["recorded", "inferred"])
def test_a_postgresql_home_refuses_sqlite_before_touching_anything(tmp_path, legacy):
    needs_postgres()
    url = postgres.session_url()
    home = TenantHome(tmp_path / "home", url)
    try:
        create_tenant(home, "acme")
        if legacy:  # no record, and tenants without tenant.db: PostgreSQL
            home.backend_file.unlink()
        schemas = postgres.tenant_schemas()
        before = snapshot(home.root)
        for args in (*READ_ONLY, ("tenants", "create", "initech"), ("migrate", "acme")):
            result = run(home, *args, url=None)
            assert result.exit_code == 2, (args, result.output)
            assert "postgresql" in result.output and "sqlite" in result.output, args
        assert snapshot(home.root) == before
        assert not home.database_file("acme").exists()
        assert postgres.tenant_schemas() == schemas
    finally:
        postgres.drop_tenant_schemas()


def test_a_home_on_another_postgresql_database_is_refused(tmp_path):
    needs_postgres()
    url = postgres.session_url()
    home = TenantHome(tmp_path / "home", url)
    try:
        create_tenant(home, "acme")
        other = url.rsplit("/", 1)[0] + "/elsewhere"
        result = run(home, "tenants", "list", url=other)
        assert result.exit_code == 2
        assert describe_backend(url) in result.output and "elsewhere" in result.output
        # the same database spelled with another driver name is the same database
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        assert run(home, "tenants", "list", url=plain).exit_code == 0
    finally:
        postgres.drop_tenant_schemas()


def test_a_server_on_the_wrong_backend_does_not_start(tmp_path):
    needs_postgres()
    home = TenantHome(tmp_path / "home")
    create_tenant(home, "acme")
    wrong = TenantHome(home.root, postgres.session_url())
    with pytest.raises(RuntimeError) as failed:
        GunicornServer(wrong, workers=1).__enter__()
    assert "TENANTRY_DATABASE_URL" in str(failed.value)
    assert postgres.tenant_schemas() == []
    # `tenantry serve` says so itself, before it runs gunicorn (a subprocess: it would
    # replace this one); so it does in a folder that is not a home
    for root, env_url in ((home.root, postgres.session_url()), (tmp_path, None)):
        env = {k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV_VAR}
        if env_url:
            env[DATABASE_URL_ENV_VAR] = env_url
        served = subprocess.run(
            [sys.executable, "-m", "tenantry.cli", "--home", str(root), "serve",
             "--bind", f"127.0.0.1:{free_port()}"],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert served.returncode == 2, served.stderr
        assert "TENANTRY" in served.stderr


# Read-only commands


def test_read_only_commands_leave_the_home_byte_identical(home, tenantry, make_tenant):
    make_tenant("acme", hosts=("acme.localhost",))
    make_tenant("globex")
    tenantry("users", "add", "acme", "alice", "--role", "admin", "--password-stdin",
             input=PASSWORD + "\n")  # fmt: skip
    tenantry("tenants", "disable", "globex")
    # a broken tenant and one copied by hand, without a database yet
    home.config_file("broken").write_text("raise RuntimeError('no')\n")
    home.instance_dir("broken").mkdir()
    (home.config_dir / "copied.py").write_text(
        home.config_file("acme")
        .read_text()
        .replace('"acme"', '"copied"')
        .replace("acme.localhost", "copied.localhost")
    )
    home.instance_dir("copied").mkdir(mode=0o700)
    schemas = postgres.tenant_schemas() if home.database_url else None
    before = snapshot(home.root)

    for args in (*READ_ONLY, ("users", "list", "copied"), ("users", "list", "globex")):
        result = tenantry(*args)
        assert result.exit_code in (0, 1), (args, result.output)
    assert json.loads(tenantry("users", "list", "acme", "--json").stdout) == [
        {"username": "alice", "roles": ["admin"], "active": True}
    ]
    copied = tenantry("users", "list", "copied", "--json")
    assert json.loads(copied.stdout) == []
    assert "no database yet" in copied.stderr

    assert snapshot(home.root) == before
    if home.database_url:
        assert postgres.tenant_schemas() == schemas


def test_users_list_reads_while_a_server_holds_the_database(home, tenantry, acme, add_user):
    add_user("acme", "alice")  # the registry's app keeps its connection (and WAL) open
    listed = tenantry("users", "list", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    assert [row["username"] for row in json.loads(listed.stdout)] == ["alice"]
    add_user("acme", "bob")
    listed = tenantry("users", "list", "acme", "--json")
    assert [row["username"] for row in json.loads(listed.stdout)] == ["alice", "bob"]


def test_a_folder_that_is_not_a_home_is_refused_with_a_hint(tmp_path):
    folder = tmp_path / "not-a-home"
    folder.mkdir()
    for args in (("tenants", "list"), ("tenants", "check"), ("users", "list", "acme"),
                 ("migrate",), ("gc",), ("tenants", "disable", "acme")):  # fmt: skip
        result = run(TenantHome(folder), *args)
        assert result.exit_code == 2, args
        assert str(folder) in result.output and "--home" in result.output, args
        assert "TENANTRY_HOME" in result.output
    assert list(folder.iterdir()) == []
    # creating the first tenant is how a home starts
    assert run(TenantHome(folder), "tenants", "create", "acme").exit_code == 0


# Users: the CLI


@pytest.fixture
def alice(acme, add_user) -> str:
    add_user("acme", "alice", roles=("admin",))
    return "alice"


@pytest.fixture
def bob(acme, add_user) -> str:
    add_user("acme", "bob")
    return "bob"


def can_log_in(client, username, password=PASSWORD, slug="acme") -> bool:
    body = {"username": username, "password": password}
    return client.post(f"/{slug}/auth/login", json=body).status_code == 200


def test_users_passwd_sets_a_new_password_and_lifts_a_lock_out(tenantry, client, bob):
    for _ in range(10):
        can_log_in(client, "bob", "wrong-password-0")
    assert client.post("/acme/auth/login", json={"username": "bob", "password": PASSWORD}
                       ).status_code == 429  # fmt: skip
    result = tenantry("users", "passwd", "acme", "bob", "--password-stdin",
                      input="a-new-password-7\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a-new-password-7" not in result.output
    assert can_log_in(client, "bob", "a-new-password-7")
    assert not can_log_in(client, "bob", PASSWORD)
    short = tenantry("users", "passwd", "acme", "bob", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "10" in short.output
    prompted = tenantry(
        "users", "passwd", "acme", "bob", input="prompted-pass-1\nprompted-pass-1\n"
    )
    assert prompted.exit_code == 0 and can_log_in(client, "bob", "prompted-pass-1")


def gone(client, token: str) -> bool:
    """Whether the token no longer works, for a request or a refresh."""
    return (
        client.get("/acme/auth/me", headers=bearer(token)).status_code == 401
        and client.post("/acme/auth/refresh", headers=bearer(token)).status_code == 401
    )


def test_a_new_password_ends_the_tokens_issued_before(tenantry, client, login, alice, bob):
    by_cli, by_route = login("acme", "bob"), login("acme", "bob")
    refreshed = client.post("/acme/auth/refresh", headers=bearer(by_cli)).json["access_token"]
    result = tenantry("users", "passwd", "acme", "bob", "--password-stdin",
                      input="a-new-password-7\n")  # fmt: skip
    assert result.exit_code == 0
    # The command is another process: a worker sees it within a second (contract: 2 s).
    for token in (by_cli, by_route, refreshed):
        poll_until(lambda t=token: gone(client, t), timeout=2)
    fresh = login("acme", "bob", "a-new-password-7")
    admin = login("acme", "alice")
    assert patch(client, admin, "bob", {"password": "third-password-9"}).status_code == 200
    assert client.get("/acme/auth/me", headers=bearer(fresh)).status_code == 401
    assert client.get("/acme/auth/me", headers=bearer(admin)).status_code == 200  # not alice's
    # a role change keeps the tokens (roles are read per request)
    token = login("acme", "bob", "third-password-9")
    assert patch(client, admin, "bob", {"roles": ["admin"]}).status_code == 200
    assert client.get("/acme/users", headers=bearer(token)).status_code == 200


def test_users_enable_role_and_delete(tenantry, client, login, alice, bob):
    stolen = login("acme", "bob")
    assert tenantry("users", "disable", "acme", "bob").exit_code == 0
    assert client.get("/acme/auth/me", headers=bearer(stolen)).status_code == 401
    assert tenantry("users", "enable", "acme", "bob").exit_code == 0
    # enabled again: the tokens of before the disable stay dead, new ones work
    assert client.get("/acme/auth/me", headers=bearer(stolen)).status_code == 401
    assert client.post("/acme/auth/refresh", headers=bearer(stolen)).status_code == 401
    token = login("acme", "bob")
    assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 200

    assert client.get("/acme/users", headers=bearer(token)).status_code == 403
    assert tenantry("users", "role", "acme", "bob", "admin").exit_code == 0
    poll_until(
        lambda: client.get("/acme/users", headers=bearer(token)).status_code == 200, timeout=2
    )
    assert tenantry("users", "role", "acme", "bob", "root").exit_code == 2

    assert tenantry("users", "delete", "acme", "bob").exit_code == 0
    poll_until(
        lambda: client.get("/acme/auth/me", headers=bearer(token)).status_code == 401, timeout=2
    )
    assert not can_log_in(client, "bob")
    listed = json.loads(tenantry("users", "list", "acme", "--json").stdout)
    assert [row["username"] for row in listed] == ["alice"]
    for args in (("delete",), ("enable",), ("role",), ("passwd",)):
        extra = ("user",) if args == ("role",) else ()
        result = tenantry("users", *args, "acme", "bob", *extra, input=(PASSWORD + "\n") * 2)
        assert result.exit_code == 2 and "bob" in result.output, args
    assert tenantry("users", "delete", "nope", "alice").exit_code == 2


def test_the_operator_may_stop_the_last_admin_and_is_told(tenantry, client, login, alice):
    token = login("acme", "alice")
    result = tenantry("users", "disable", "acme", "alice")
    assert result.exit_code == 0
    assert "no active admin" in result.stderr
    assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 401
    assert tenantry("users", "enable", "acme", "alice").exit_code == 0
    assert "no active admin" not in tenantry("users", "enable", "acme", "alice").stderr


# Users: the admin routes


def patch(client, token, username, body, slug="acme"):
    return client.patch(f"/{slug}/users/{username}", json=body, headers=bearer(token))


def test_admin_changes_a_users_password_roles_and_state(client, login, alice, bob):
    admin, user = login("acme", "alice"), login("acme", "bob")
    response = patch(client, admin, "bob", {"password": "changed-pass-22"})
    assert response.status_code == 200
    assert response.json == {"id": response.json["id"], "username": "bob", "roles": ["user"],
                             "active": True}  # fmt: skip
    assert can_log_in(client, "bob", "changed-pass-22") and not can_log_in(client, "bob")
    assert client.get("/acme/auth/me", headers=bearer(user)).status_code == 401
    user = login("acme", "bob", "changed-pass-22")

    assert patch(client, admin, "bob", {"roles": ["admin", "user"]}).json["roles"] == [
        "admin",
        "user",
    ]
    assert client.get("/acme/users", headers=bearer(user)).status_code == 200

    assert patch(client, admin, "bob", {"active": False}).json["active"] is False
    assert client.get("/acme/auth/me", headers=bearer(user)).status_code == 401
    assert patch(client, admin, "bob", {"active": True, "roles": ["user"]}).status_code == 200
    assert client.get("/acme/auth/me", headers=bearer(user)).status_code == 401  # for good
    user = login("acme", "bob", "changed-pass-22")
    assert client.get("/acme/auth/me", headers=bearer(user)).status_code == 200
    assert client.get("/acme/users", headers=bearer(user)).status_code == 403


def test_admin_deletes_a_user_and_its_tokens_die(client, login, alice, bob):
    admin, user = login("acme", "alice"), login("acme", "bob")
    response = client.delete("/acme/users/bob", headers=bearer(admin))
    assert response.status_code == 204 and response.data == b""
    assert client.get("/acme/auth/me", headers=bearer(user)).status_code == 401
    assert client.delete("/acme/users/bob", headers=bearer(admin)).status_code == 404
    assert patch(client, admin, "bob", {"active": True}).status_code == 404
    users = client.get("/acme/users", headers=bearer(admin)).json["users"]
    assert [user["username"] for user in users] == ["alice"]


def test_the_last_active_admin_cannot_be_removed_or_demoted(client, login, add_user, alice):
    admin = login("acme", "alice")
    for response in (
        patch(client, admin, "alice", {"roles": ["user"]}),
        patch(client, admin, "alice", {"active": False}),
        client.delete("/acme/users/alice", headers=bearer(admin)),
    ):
        assert response.status_code == 409
        assert (
            response.json["error"] == "conflict" and "last active admin" in response.json["message"]
        )
    # a disabled admin does not count
    add_user("acme", "carol", roles=("admin",))
    assert patch(client, admin, "carol", {"active": False}).status_code == 200
    assert patch(client, admin, "alice", {"roles": ["user"]}).status_code == 409
    assert patch(client, admin, "carol", {"active": True}).status_code == 200
    # with another active admin, alice may step down
    assert patch(client, admin, "alice", {"roles": ["user"]}).status_code == 200
    assert client.get("/acme/users", headers=bearer(admin)).status_code == 403


def test_two_admins_demoting_each_other_at_once_leave_one(registry, acme, add_user):
    database = registry.lookup("acme").app.extensions["tenantry.db"]
    for round_ in range(5):
        pair = (f"first{round_}", f"second{round_}")
        for name in pair:
            add_user("acme", name, roles=("admin",))
        for earlier in range(round_):  # only this round's two are active admins
            for name in (f"first{earlier}", f"second{earlier}"):
                update_user(database, None, name, active=False, keep_an_admin=False)
        barrier, refused = threading.Barrier(2), []

        def demote(username, barrier=barrier, refused=refused):
            barrier.wait()
            try:
                update_user(database, None, username, roles=["user"])
            except LastAdmin:
                refused.append(username)

        threads = [threading.Thread(target=demote, args=(name,)) for name in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(refused) == 1, round_
        assert has_active_admin(database)


def test_user_routes_refuse_bad_input_and_non_admins(client, login, alice, bob):
    admin, user = login("acme", "alice"), login("acme", "bob")
    for body in ({}, {"name": "x"}, {"active": "no"}, {"active": None}, {"roles": ["root"]},
                 {"roles": []}, {"password": "short"}, {"password": 12345678901}, [1]):  # fmt: skip
        response = patch(client, admin, "bob", body)
        assert response.status_code == 400, body
        assert response.json["error"] == "bad_request"
    broken = client.patch("/acme/users/bob", data=b"{", headers={**bearer(admin),
                          "Content-Type": "application/json"})  # fmt: skip
    assert broken.status_code == 400
    assert patch(client, admin, "nobody", {"active": True}).status_code == 404
    assert patch(client, admin, "bad%20name", {"active": True}).status_code == 404
    assert patch(client, user, "alice", {"active": False}).status_code == 403
    assert client.delete("/acme/users/alice", headers=bearer(user)).status_code == 403
    assert client.delete("/acme/users/alice").status_code == 401


def test_an_admin_of_one_tenant_cannot_touch_anothers_users(client, login, add_user, alice, bob,
                                                            globex):  # fmt: skip
    add_user("globex", "gadmin", roles=("admin",))
    add_user("globex", "bob")
    foreign = login("globex", "gadmin")
    assert patch(client, foreign, "bob", {"active": False}).status_code == 401
    assert client.delete("/acme/users/bob", headers=bearer(foreign)).status_code == 401
    acme_admin = login("acme", "alice")
    assert client.delete("/acme/users/bob", headers=bearer(acme_admin)).status_code == 204
    assert can_log_in(client, "bob", slug="globex")


# Private files


def test_tenant_data_and_secrets_are_private(home, tenantry, client, login, alice):
    token = login("acme", "alice")
    auth = bearer(token)
    assert client.put("/acme/files/report.csv", data=b"a,b\n", headers=auth).status_code == 201
    assert client.post("/acme/files/report.csv/link", json={}, headers=auth).status_code == 201
    body = {"name": "sales", "files": ["report.csv"], "uses": [], "description": ""}
    assert client.post("/acme/api/datasets", json=body, headers=auth).status_code == 201
    zipped = client.post("/acme/api/datasets/download", json={"datasets": ["sales"]}, headers=auth)
    assert zipped.status_code == 201
    instance = home.instance_dir("acme")
    checked = 0
    for folder, _folders, files in os.walk(instance):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in files:
            path = os.path.join(folder, name)
            if name in ("wsgi.py", ".lock", ".migrate.lock"):
                continue
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            checked += 1
    expected = 4 if home.database_url else 5  # .env, blob, snapshot, zip (+ tenant.db...)
    assert checked >= expected
    assert tenantry("tenants", "check", "acme").exit_code == 0

    blob = next((instance / "storage" / ".blobs").iterdir())
    blob.chmod(0o644)
    result = tenantry("tenants", "check", "acme")
    assert result.exit_code == 1
    assert "readable by others" in result.output and blob.name in result.output
    assert f"chmod -R go-rwx {instance}" in result.output  # runs from any folder


# Server settings from the environment


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TENANTRY_TRUSTED_PROXIES", "one"),
        ("TENANTRY_MAX_LOADED_APPS", "0"),
        ("TENANTRY_MAX_LOADED_APPS", "1e3"),
        ("TENANTRY_SWEEP_INTERVAL", "-1"),
        ("TENANTRY_SWEEP_INTERVAL", "inf"),
        ("TENANTRY_LOG_LEVEL", "verbose"),
    ],
)
def test_tenantry_serve_refuses_a_wrong_server_setting_before_it_starts(tmp_path, variable, value):
    home = TenantHome(tmp_path / "home")
    create_tenant(home, "acme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}
    env[variable] = value
    served = subprocess.run(
        [sys.executable, "-m", "tenantry.cli", "--home", str(home.root), "serve",
         "--bind", f"127.0.0.1:{free_port()}"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert served.returncode == 2, served.stderr
    assert variable in served.stderr and repr(value) in served.stderr


def test_a_tenant_cannot_turn_on_flasks_debugging(tenantry, home, make_tenant):
    make_tenant("acme")
    path = home.config_file("acme")
    path.write_text(path.read_text() + "    DEBUG = True\n    PROPAGATE_EXCEPTIONS = True\n")
    result = tenantry("tenants", "check", "acme")
    assert result.exit_code == 1
    assert "DEBUG must stay False" in result.output
    assert "PROPAGATE_EXCEPTIONS must stay False" in result.output


def test_the_backend_record_and_its_errors_never_show_a_password(tmp_path):
    secret_url = "postgresql+psycopg://postgres:hunter22@127.0.0.1:5432/test"
    assert describe_backend(secret_url) == "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    home = TenantHome(tmp_path / "home")
    create_tenant(home, "acme")
    result = run(home, "tenants", "list", url=secret_url)
    assert result.exit_code == 2
    assert "hunter22" not in result.output
    assert "postgresql+psycopg://postgres@127.0.0.1:5432/test" in result.output


def test_users_of_before_token_generations_migrate_and_keep_their_tokens(home, registry, client):
    """A tenant at revision 0005 (no token_generation) with a user: after `migrate`, the
    user logs in, and a token without the "gen" claim (issued before) still works."""
    from alembic import command
    from passlib.hash import pbkdf2_sha512
    from sqlalchemy import text

    from tenantry.data.db import MIGRATIONS_DIR, SCHEMA_REVISION, _alembic_config, tenant_database
    from tenantry.data.users import find_user
    from tenantry.web.auth import guard_of, issuer

    home.config_dir.mkdir(exist_ok=True)
    create_tenant(home, "acme")
    database = tenant_database(home, "acme")
    try:
        if database.is_postgres:
            database.drop_schema()
            with database.engine.begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{database.schema}"')
        else:
            database.dispose()
            for suffix in ("", "-wal", "-shm"):
                home.instance_dir("acme").joinpath("tenant.db" + suffix).unlink(missing_ok=True)
        config = _alembic_config(MIGRATIONS_DIR / "versions")
        table = f'"{database.schema}".users' if database.is_postgres else "users"
        with database.engine.begin() as connection:
            config.attributes.update(connection=connection, schema=database.schema)
            command.upgrade(config, "0005")
            connection.execute(
                text(
                    f"INSERT INTO {table} (username, password_hash, roles, active, created_at) "  # noqa: S608
                    "VALUES ('old', :hashed, 'user', true, :now)"
                ),
                {"hashed": pbkdf2_sha512.hash(PASSWORD), "now": datetime.now(UTC)},
            )
        assert database.current_revision() == "0005"
    finally:
        database.dispose()
    app = registry.lookup("acme").app  # builds the app: migrates the database to the head
    assert app.extensions["tenantry.db"].current_revision() == SCHEMA_REVISION
    assert can_log_in(client, "old")
    with app.app_context():
        user = find_user(app.extensions["tenantry.db"], "old")
        legacy = guard_of(app).encode_jwt_token(user, iss=issuer("acme"), tenant="acme")
    assert client.get("/acme/auth/me", headers=bearer(legacy)).status_code == 200


def test_passwd_of_an_unknown_user_asks_for_no_password(tenantry, acme):
    result = tenantry("users", "passwd", "acme", "nobody")  # no input: a prompt would abort
    assert result.exit_code == 2
    assert "no user named 'nobody'" in result.output
    assert "Password" not in result.output


def test_a_url_that_cannot_be_read_is_refused_with_exit_2(tmp_path):
    home = TenantHome(tmp_path / "home")
    create_tenant(home, "acme")
    for url in ("garbage", "postgresql+psycopg://u:pw@h:notaport/db"):
        result = run(home, "tenants", "list", url=url)
        assert result.exit_code == 2, result.output
        assert "TENANTRY_DATABASE_URL is not a database URL" in result.output
        assert "pw" not in result.output
    assert describe_backend("postgresql+psycopg://u@h/db?password=s3cret&sslmode=require") == (
        "postgresql+psycopg://u@h/db?sslmode=require"
    )


def test_a_server_started_before_the_record_keeps_to_the_first_backend(tmp_path):
    """A server on PostgreSQL over an empty home; then a tenant is made on SQLite: the
    server refuses to build it (503) rather than give it a schema as well."""
    needs_postgres()
    from tenantry.server.registry import TenantRegistry

    root = tmp_path / "home"
    (root / "config").mkdir(parents=True)
    registry = TenantRegistry(TenantHome(root, postgres.session_url()), check_interval=0)
    try:
        assert registry.lookup("acme") is None
        create_tenant(TenantHome(root), "acme")  # records sqlite
        entry = registry.lookup("acme")
        assert entry.app is None and "sqlite" in entry.error
        assert postgres.tenant_schemas() == []
        # and a second create on the other backend is refused, not recorded over
        with pytest.raises(HomeError):
            create_tenant(TenantHome(root, postgres.session_url()), "globex")
        assert postgres.tenant_schemas() == []
        assert not TenantHome(root).exists("globex")
    finally:
        registry.close()


def test_users_list_reads_a_database_not_migrated_yet(tmp_path):
    import sqlite3

    home = TenantHome(tmp_path / "home")
    create_tenant(home, "acme")
    run(home, "users", "add", "acme", "alice", "--role", "admin", "--password-stdin",
        input=PASSWORD + "\n")  # fmt: skip
    with sqlite3.connect(home.database_file("acme")) as connection:  # as at revision 0005
        connection.execute("ALTER TABLE users DROP COLUMN token_generation")
        connection.execute("UPDATE alembic_version SET version_num = '0005'")
    listed = run(home, "users", "list", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [{"username": "alice", "roles": ["admin"], "active": True}]


def test_a_record_edited_into_nonsense_is_a_mismatch_not_a_traceback(tmp_path):
    home = TenantHome(tmp_path / "home")
    create_tenant(home, "acme")
    home.backend_file.write_text("garbage\n")
    result = run(home, "tenants", "list", url="postgresql+psycopg://u@h/db")
    assert result.exit_code == 2, result.output
    assert "garbage" in result.output and "postgresql+psycopg://u@h/db" in result.output
