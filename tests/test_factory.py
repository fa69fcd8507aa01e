"""One app per tenant, each from its own config class and its own secrets."""

from __future__ import annotations

import gc
import io
import os
import threading
import weakref

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from dotenv import dotenv_values

from tenantry.config import TenantConfig, TenantConfigError
from tenantry.data.db import MIGRATIONS_DIR, SCHEMA_REVISION
from tenantry.home.env import parse_env, read_secrets
from tenantry.home.loader import load_config_class
from tenantry.home.settings import tenant_settings
from tenantry.server import factory
from tenantry.server.factory import create_app
from tests.conftest import drop_database, revision_of


def test_two_tenants_get_their_own_secret_and_leave_os_environ_untouched(home, acme, globex):
    home.env_file(globex).write_text(
        home.env_file(globex).read_text() + "PAYMENT_API_KEY=globex-only\n"
    )
    environ_before = dict(os.environ)

    acme_app = create_app(load_config_class(home, acme), home)
    globex_app = create_app(load_config_class(home, globex), home)

    assert dict(os.environ) == environ_before
    assert acme_app.config["SECRET_KEY"] == read_secrets(home, acme)["SECRET_KEY"]
    assert globex_app.config["SECRET_KEY"] == read_secrets(home, globex)["SECRET_KEY"]
    assert acme_app.config["SECRET_KEY"] != globex_app.config["SECRET_KEY"]
    assert globex_app.config["PAYMENT_API_KEY"] == "globex-only"
    assert "PAYMENT_API_KEY" not in acme_app.config
    assert acme_app.instance_path == str(home.instance_dir(acme))
    assert acme_app.config["STORAGE_ROOT"] != globex_app.config["STORAGE_ROOT"]


def test_production_defaults_are_safe(home, acme):
    app = create_app(load_config_class(home, acme), home)
    assert app.config["PROPAGATE_EXCEPTIONS"] is False
    assert app.config["DEBUG"] is False and app.config["TESTING"] is False
    assert app.config["MAX_CONTENT_LENGTH"] == 1024**3
    assert app.config["SESSION_COOKIE_NAME"] == "tenantry-acme"
    assert app.json.sort_keys is False
    assert app.url_map.merge_slashes is False


def test_limits_can_be_overridden_per_tenant(home, acme):
    path = home.config_file(acme)
    path.write_text(path.read_text() + "    MAX_CONTENT_LENGTH = 1234\n")
    app = create_app(load_config_class(home, acme), home)
    assert app.config["MAX_CONTENT_LENGTH"] == 1234


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ("", "SECRET_KEY is missing"),
        ("SECRET_KEY=short\n", "shorter than 32 bytes"),
        ("SECRET_KEY=" + "a" * 40 + "\n", "well-known default or too repetitive"),
        ("SECRET_KEY=changeme\n", "well-known default"),
        ("SECRET_KEY=" + "x9" * 20 + "\nMAX_CONTENT_LENGTH=5\n", "too repetitive"),
    ],
)
def test_invalid_secrets_stop_the_tenant_from_starting(home, acme, env, problem):
    home.env_file(acme).write_text(env)
    with pytest.raises(TenantConfigError, match=problem):
        create_app(load_config_class(home, acme), home)


def test_unknown_blueprint_is_a_clear_error(home):
    class Broken(TenantConfig):
        SLUG = "broken"
        BLUEPRINTS = ("landing", "wiki")

    with pytest.raises(TenantConfigError, match=r"endpoint module .wiki.: unknown"):
        tenant_settings(Broken, {"SECRET_KEY": "k" + os.urandom(32).hex()}, home.root)


def test_concurrent_first_requests_build_the_app_once(registry, acme):
    barrier = threading.Barrier(16)
    apps = []

    def first_request():
        barrier.wait()
        apps.append(registry.lookup(acme).app)

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(apps) == 16
    assert len({id(app) for app in apps}) == 1
    assert registry.builds == 1


def test_schema_revision_is_the_newest_migration():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_a_copied_tenant_without_database_gets_one_on_first_build(home, acme, registry):
    drop_database(home, acme)
    assert registry.lookup(acme).app is not None
    assert revision_of(home, acme) == SCHEMA_REVISION


def test_apps_with_the_same_blueprints_share_routes_and_views_but_serve_their_own_tenant(
    home, make_tenant
):
    first = create_app(load_config_class(home, make_tenant("one")), home)
    second = create_app(load_config_class(home, make_tenant("two")), home)
    other = create_app(load_config_class(home, make_tenant("few", blueprints=("landing",))), home)
    assert second.url_map is first.url_map
    assert second.view_functions is first.view_functions
    assert other.url_map is not first.url_map
    assert "files.filelist" not in other.view_functions
    # The shared views find their tenant through the app that serves the request.
    assert first.test_client().get("/").json["tenant"] == "one"
    assert second.test_client().get("/").json["tenant"] == "two"
    assert second.test_client().get("/status").json["tenant"] == "two"
    assert other.test_client().get("/").json["blueprints"] == ["landing", "status", "auth"]
    for app in (first, second, other):
        app.extensions["tenantry.db"].dispose()


def test_a_route_added_after_the_build_stays_with_its_own_app(home, make_tenant, client):
    first = create_app(load_config_class(home, make_tenant("one")), home)
    second = create_app(load_config_class(home, make_tenant("two")), home)
    shared = first.url_map
    second.add_url_rule("/extra", "extra", lambda: {"extra": True})
    assert first.url_map is shared
    assert "extra" not in {rule.endpoint for rule in shared.iter_rules()}
    assert second.test_client().get("/extra").json == {"extra": True}
    assert second.test_client().get("/files").status_code == 401  # the copy kept the rest
    assert first.test_client().get("/extra").status_code == 404
    for app in (first, second):
        app.extensions["tenantry.db"].dispose()


def test_a_route_kit_does_not_keep_the_app_that_built_it_alive(home, make_tenant):
    factory._route_kits.clear()  # so that this test's first app builds the kit
    builder = create_app(load_config_class(home, make_tenant("one")), home)
    user = create_app(load_config_class(home, make_tenant("two")), home)
    builder.extensions["tenantry.db"].dispose()
    gone = weakref.ref(builder)
    del builder
    gc.collect()
    assert gone() is None  # nor its config and SECRET_KEY
    assert user.test_client().get("/").json["tenant"] == "two"
    user.extensions["tenantry.db"].dispose()


def test_shared_views_cannot_be_changed_in_place(home, make_tenant):
    app = create_app(load_config_class(home, make_tenant("one")), home)
    with pytest.raises(TypeError):
        app.endpoint("landing.landing")(lambda: {})
    app.extensions["tenantry.db"].dispose()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SECRET_KEY=" + "Ab9-" * 16 + "\n",  # the shape new_secret_key() makes, fixed
        "A=1\nB=\nA=2\r\nC=x/y+z==:@%~,;-_.\n\n",
        "export SECRET_KEY=abc\n",
        "SECRET_KEY='quoted value'\nOTHER=\"a\\nb\"\n",
        "SECRET_KEY=abc # a comment\n",
        "# only a comment\nKEY=value\n",
        "KEY=${HOME}\nX=$KEY\n",
        "KEY = spaced\n",
        "KEY=trailing \n",
        "NOVALUE\n",
        "KEY=unicodé\n",
        "A=1\x0cB=2\n",
        "A=1\x85B=2\n",
        "A=1\u2028B=2\n",
        "A=1\x0bB=2\x1cC=3\n",
        "\ufeffA=1\n",
    ],
)
def test_env_files_read_as_python_dotenv_reads_them(text):
    """The direct reading of plain KEY=value lines must never differ from python-dotenv,
    which reads everything else."""
    assert parse_env(text) == dotenv_values(stream=io.StringIO(text))


def test_the_session_interface_still_sets_reads_and_clears_a_session_cookie():
    """Skipping the cookie work for an untouched session keeps Flask's behaviour for a
    module that uses ``flask.session``: set, read (Vary: Cookie), cleared."""
    from flask import Flask, session

    from tenantry.server.factory import TenantSessionInterface

    app = Flask(__name__)
    app.secret_key = "k" * 32
    app.session_interface = TenantSessionInterface()
    app.add_url_rule("/set", "set", lambda: (session.__setitem__("n", 1), "ok")[1])
    app.add_url_rule("/read", "read", lambda: str(session.get("n")))
    app.add_url_rule("/clear", "clear", lambda: (session.clear(), "ok")[1])
    app.add_url_rule("/none", "none", lambda: "ok")
    client = app.test_client()
    untouched = client.get("/none")
    assert "Set-Cookie" not in untouched.headers and "Vary" not in untouched.headers
    assert "Set-Cookie" in client.get("/set").headers
    read = client.get("/read")
    assert read.text == "1" and "Cookie" in read.headers["Vary"]
    cleared = client.get("/clear")
    assert "session=;" in cleared.headers["Set-Cookie"]
    assert client.get("/read").text == "None"
