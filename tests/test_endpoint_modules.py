"""A team's own endpoint modules: found by import path or entry point, their settings and
tables per tenant, refused when they could tie themselves to one tenant, and the isolation
check that every module (the built-ins too) passes."""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
import uuid
from pathlib import Path

import pytest

from tenantry.config import ALL_BLUEPRINTS
from tenantry.data.db import SCHEMA_REVISION, tenant_database
from tenantry.ops.checks import check_tenants
from tenantry.ops.errors import TenantError
from tenantry.ops.lifecycle import create_tenant
from tenantry.ops.migrate import migrate_tenants
from tenantry.testing import isolation_problems
from tests.conftest import bearer

SRC = Path(__file__).resolve().parent.parent / "src" / "tenantry"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "notes" / "tenantry_notes"

GREETER = """
from flask import Blueprint
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.endpoint import (
    STRING, Base, TenantApi, TenantResource, current_tenant, operation, schema_object,
)

blueprint = Blueprint("{name}", __name__)
api = TenantApi(blueprint)
settings = {{"GREETING": "hello"}}


class Visit{name}(Base):
    __tablename__ = "{name}_visits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))


class Hello(TenantResource):
    openapi = {{"get": operation("Greets", {{200: schema_object({{"greeting": STRING}})}},
                                 public=True)}}

    def get(self):
        with self.database.transaction() as session:
            session.add(Visit{name}(tenant=current_tenant.slug))
        with self.database.transaction() as session:
            visits = session.scalar(select(func.count()).select_from(Visit{name}))
        return {{"greeting": self.config["GREETING"], "tenant": current_tenant.slug,
                 "visits": visits}}


api.add_resource(Hello, "/hello")
"""


ROUTE = """
from flask import Blueprint
from tenantry.endpoint import TenantApi, TenantResource, operation

blueprint = Blueprint("{blueprint}", __name__)


class Mine(TenantResource):
    openapi = {{{{"get": operation("Mine", {{{{200: {{{{"type": "object"}}}}}}}}, public=True)}}}}

    def get(self):
        return {{{{"mine": True}}}}


TenantApi(blueprint).add_resource(Mine, "{path}")
"""


def set_blueprints(home, slug: str, blueprints: tuple[str, ...]) -> None:
    path = home.config_file(slug)
    lines = [line for line in path.read_text().splitlines() if "BLUEPRINTS" not in line]
    lines.append(f"    BLUEPRINTS = {blueprints!r}")
    path.write_text("\n".join(lines) + "\n")


def add_to_config(home, slug: str, line: str) -> None:
    path = home.config_file(slug)
    path.write_text(path.read_text() + f"    {line}\n")


def test_a_module_by_import_path_serves_only_the_tenants_that_enable_it(
    home, client, make_tenant, write_module
):
    greeter = write_module(GREETER)
    make_tenant("shop", blueprints=("landing", greeter))
    make_tenant("plain", blueprints=("landing",))
    response = client.get("/shop/hello")
    assert response.status_code == 200
    assert response.json == {"greeting": "hello", "tenant": "shop", "visits": 1}
    assert client.get("/shop/").json["blueprints"] == ["landing", "status", "auth", greeter]
    assert "/hello" in client.get("/shop/openapi.json").json["paths"]
    missing = client.get("/plain/hello")
    assert (missing.status_code, missing.json["error"]) == (404, "not_found")
    assert "/hello" not in client.get("/plain/openapi.json").json["paths"]


def test_module_tables_live_in_each_enabling_tenant_alone(home, client, make_tenant, write_module):
    greeter = write_module(GREETER)
    make_tenant("shop", blueprints=(greeter,))
    make_tenant("mall", blueprints=(greeter,))
    make_tenant("plain", blueprints=("landing",))
    assert [client.get("/shop/hello").json["visits"] for _ in range(3)] == [1, 2, 3]
    assert client.get("/mall/hello").json["visits"] == 1  # its own table, not shop's
    client.get("/plain/")
    for slug, has_table in (("shop", True), ("mall", True), ("plain", False)):
        database = tenant_database(home, slug)
        try:
            assert (f"{greeter}_visits" in database.table_names()) is has_table
        finally:
            database.dispose()


def test_a_tenant_overrides_a_module_setting_and_a_wrong_type_is_named(
    home, client, make_tenant, write_module
):
    greeter = write_module(GREETER)
    make_tenant("shop", blueprints=(greeter,))
    add_to_config(home, "shop", 'GREETING = "ahoy"')
    assert client.get("/shop/hello").json["greeting"] == "ahoy"
    add_to_config(home, "shop", "GREETING = 5")
    assert client.get("/shop/hello").status_code == 503
    assert any(
        "GREETING must be str" in problem for problem in check_tenants(home)["shop"].problems
    )


@pytest.mark.parametrize(
    ("source", "named"),
    [
        (None, "ModuleNotFoundError"),
        ("raise RuntimeError('boom at import')", "RuntimeError: boom at import"),
        ("blueprint = 'not a blueprint'", "has no module-level `blueprint`"),
        (
            """
            from flask import Blueprint
            KEPT = []
            blueprint = Blueprint("{name}", __name__)
            blueprint.record(lambda state: KEPT.append(state.app))
            """,
            "receives a tenant's app",
        ),
        (
            """
            from flask import Blueprint
            from flask_restful import Api
            blueprint = Blueprint("{name}", __name__)
            Api(blueprint)
            """,
            "use tenantry.endpoint.TenantApi",
        ),
        (
            """
            from flask import Blueprint
            blueprint = Blueprint("{name}", __name__)
            settings = {{"STORAGE_QUOTA": 1}}
            """,
            "STORAGE_QUOTA is the platform's own",
        ),
        (
            """
            from flask import Blueprint
            blueprint = Blueprint("{name}", __name__)
            blueprint.register_error_handler(404, lambda error: ("not here", 404))
            """,
            "has error handlers",
        ),
        (
            """
            from flask import Blueprint
            blueprint = Blueprint("{name}", __name__)
            blueprint.before_app_request(lambda: None)
            """,
            "app-wide hooks or template helpers (before_app_request)",
        ),
        (
            """
            from flask import Blueprint
            from sqlalchemy import Integer
            from sqlalchemy.orm import Mapped, mapped_column, relationship
            from tenantry.endpoint import Base
            blueprint = Blueprint("{name}", __name__)
            class Broken{name}(Base):
                __tablename__ = "{name}_broken"
                id: Mapped[int] = mapped_column(Integer, primary_key=True)
                other = relationship("NoSuchModel")
            """,
            "its models cannot be mapped",
        ),
        (
            ROUTE.format(name="{name}", blueprint="files", path="/mine"),
            "cannot be registered beside the others",
        ),
        (
            ROUTE.format(name="{name}", blueprint="{name}", path="/files/report"),
            "collides with /files/<name> of 'files'",
        ),
        (
            ROUTE.format(name="{name}", blueprint="{name}", path="/openapi.json"),
            "collides with /openapi.json of 'openapi'",
        ),
    ],
    ids=[
        "missing",
        "fails",
        "no-blueprint",
        "takes-the-app",
        "plain-api",
        "platform-setting",
        "blueprint-error-handler",
        "app-hook",
        "broken-models",
        "blueprint-name-taken",
        "route-under-a-builtin",
        "own-openapi",
    ],
)
def test_a_broken_module_makes_only_its_tenants_503_and_check_names_it(
    home, client, acme, make_tenant, write_module, source, named
):
    module = write_module(source) if source else "no_such_package.endpoints"
    make_tenant("shop", blueprints=("landing",))
    set_blueprints(home, "shop", ("landing", "files", module))
    response = client.get("/shop/")
    assert (response.status_code, response.json["error"]) == (503, "service_unavailable")
    assert client.get("/acme/").status_code == 200
    # The others' queries still work (a broken mapper would fail every query of any model).
    wrong = {"username": "nobody", "password": "not-the-password"}
    assert client.post("/acme/auth/login", json=wrong).status_code == 401
    report = check_tenants(home)
    assert report["acme"].problems == []
    named = named.replace("{name}", module)
    problems = report["shop"].problems
    assert any(module in problem and named in problem for problem in problems), problems
    with pytest.raises(TenantError, match=re.escape(named)):
        create_tenant(home, "again", blueprints=("landing", "files", module))


def test_each_tenant_gets_its_own_copy_of_a_setting_default(client, make_tenant, write_module):
    module = write_module(
        """
        from flask import Blueprint
        from tenantry.endpoint import TenantApi, TenantResource, current_tenant, operation

        blueprint = Blueprint("{name}", __name__)
        settings = {{"SEEN_BY": ["nobody"]}}


        class Seen(TenantResource):
            openapi = {{"post": operation("Adds", {{200: {{"type": "object"}}}}, public=True)}}

            def post(self):
                self.config["SEEN_BY"].append(current_tenant.slug)
                return {{"seen_by": self.config["SEEN_BY"]}}


        TenantApi(blueprint).add_resource(Seen, "/seen")
        """
    )
    make_tenant("one", blueprints=(module,))
    make_tenant("two", blueprints=(module,))
    assert client.post("/one/seen").json["seen_by"] == ["nobody", "one"]
    assert client.post("/two/seen").json["seen_by"] == ["nobody", "two"]


def test_a_non_text_module_setting_in_env_is_refused(home, client, make_tenant, write_module):
    module = write_module(
        GREETER.replace('{{"GREETING": "hello"}}', '{{"GREETING": "hello", "TIMES": 3}}')
    )
    make_tenant("shop", blueprints=(module,))
    env = home.env_file("shop")
    env.write_text(env.read_text() + "GREETING=ahoy\n")
    assert client.get("/shop/hello").json["greeting"] == "ahoy"
    env.write_text(env.read_text() + "TIMES=5\n")
    assert client.get("/shop/hello").status_code == 503
    assert any(
        "TIMES is set in .env" in problem for problem in check_tenants(home)["shop"].problems
    )


def test_a_module_in_a_package_gets_the_tables_of_its_package(
    home, client, make_tenant, tmp_path, monkeypatch
):
    package = tmp_path / "pkgs" / f"pkg_{uuid.uuid4().hex[:8]}"
    package.mkdir(parents=True)
    name = package.name
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        textwrap.dedent(
            f"""
            from sqlalchemy import Integer
            from sqlalchemy.orm import Mapped, mapped_column
            from tenantry.endpoint import Base

            class Thing{name}(Base):
                __tablename__ = "{name}_things"
                id: Mapped[int] = mapped_column(Integer, primary_key=True)
            """
        )
    )
    (package / "api.py").write_text(
        ROUTE.format(blueprint=name, path="/mine").replace("{{", "{").replace("}}", "}")
        + f"\nfrom {name} import models  # noqa\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    importlib.invalidate_caches()
    make_tenant("shop", blueprints=(f"{name}.api",))
    assert client.get("/shop/mine").json == {"mine": True}
    database = tenant_database(home, "shop")
    try:
        assert f"{name}_things" in database.table_names()
    finally:
        database.dispose()


def test_migrations_with_two_heads_are_refused_at_create(home, tmp_path, write_module, tenantry):
    versions = tmp_path / "two-heads"
    versions.mkdir()
    for revision in ("one", "two"):
        (versions / f"{revision}.py").write_text(
            f'revision = "{revision}"\ndown_revision = None\nbranch_labels = None\n'
            "depends_on = None\n\ndef upgrade():\n    pass\n"
        )
    module = write_module(
        """
        from flask import Blueprint
        blueprint = Blueprint("{name}", __name__)
        migrations = MIGRATIONS
        """.replace("MIGRATIONS", repr(str(versions)))
    )
    result = tenantry("tenants", "create", "shop", "--blueprints", f"landing,{module}")
    assert result.exit_code == 2
    assert "must hold one line of revisions" in result.output
    assert not home.config_file("shop").exists()


def test_create_takes_entry_point_and_import_path_names_and_refuses_unknown_ones(
    home, write_module
):
    greeter = write_module(GREETER)
    create_tenant(home, "shop", blueprints=("notes", "landing", greeter))
    assert f'BLUEPRINTS = ("landing", "notes", "{greeter}")' in home.config_file("shop").read_text()
    with pytest.raises(TenantError, match=r"no_such\.module"):
        create_tenant(home, "nope", blueprints=("landing", "no_such.module"))
    with pytest.raises(TenantError, match="'wiki': unknown"):
        create_tenant(home, "nope", blueprints=("wiki",))
    assert not home.config_file("nope").exists() and not home.instance_dir("nope").exists()


def test_the_cli_creates_a_tenant_with_an_installed_module(home, tenantry):
    result = tenantry("tenants", "create", "shop", "--blueprints", "landing,notes")
    assert result.exit_code == 0, result.output
    assert tenantry("tenants", "check", "shop").output == "shop: ok\n"
    database = tenant_database(home, "shop")
    try:
        assert database.current_revision("alembic_version_tenantry_notes") == "notes_0001"
    finally:
        database.dispose()


def test_enabling_a_module_later_migrates_it_on_the_next_build(
    home, client, make_tenant, add_user, login
):
    make_tenant("shop", blueprints=("landing",))
    add_user("shop", "sam")
    assert client.get("/shop/notes").status_code == 404
    set_blueprints(home, "shop", ("landing", "notes"))
    token = login("shop", "sam")
    created = client.post("/shop/notes", json={"text": "later"}, headers=bearer(token))
    assert created.status_code == 201
    assert client.get("/shop/notes", headers=bearer(token)).json["notes"] == [created.json]


def test_migrate_brings_every_enabled_module_up_and_disabling_keeps_the_data(
    home, client, make_tenant, add_user, login, tenantry
):
    make_tenant("shop", blueprints=("landing",))
    set_blueprints(home, "shop", ("landing", "notes"))
    result = tenantry("migrate")
    assert result.exit_code == 0
    assert f"shop: at revision {SCHEMA_REVISION} (notes: notes_0001)" in result.output
    assert migrate_tenants(home) == {"shop": f"{SCHEMA_REVISION} (notes: notes_0001)"}
    database = tenant_database(home, "shop")
    try:
        assert "notes" in database.table_names()
    finally:
        database.dispose()

    add_user("shop", "sam")
    token = bearer(login("shop", "sam"))
    client.post("/shop/notes", json={"text": "keep me"}, headers=token)
    set_blueprints(home, "shop", ("landing",))
    assert client.get("/shop/notes", headers=token).status_code == 404
    set_blueprints(home, "shop", ("landing", "notes"))
    assert [note["text"] for note in client.get("/shop/notes", headers=token).json["notes"]] == [
        "keep me"
    ]


# The isolation check ---------------------------------------------------------------------

BUILTIN_REQUESTS = [
    ("PUT", "/files/probe", {"some": "bytes"}),
    ("GET", "/files/probe", None),
    ("GET", "/files/probe/info", None),
    ("POST", "/files/probe/link", {"ttl": 60}),
    ("POST", "/api/datasets", {"name": "probe", "files": ["probe"], "uses": ["x"]}),
    ("GET", "/api/datasets?uses=x&q=pro", None),
    ("POST", "/api/datasets/download", {"datasets": ["probe"]}),
    ("DELETE", "/files/probe", None),
    ("POST", "/users", {"username": "someone", "password": "a-long-password", "roles": ["user"]}),
]


def test_every_builtin_module_passes_the_isolation_check(home):
    assert isolation_problems(home, ALL_BLUEPRINTS, requests=BUILTIN_REQUESTS) == []


def test_the_notes_example_passes_the_isolation_check(home):
    writes = [("POST", "/notes", {"text": "x"}), ("GET", "/notes/1", None)]
    assert isolation_problems(home, ("landing", "notes"), requests=writes) == []


LEAKY = """
from flask import Blueprint, current_app
from sqlalchemy import text

from tenantry.endpoint import TenantApi, TenantResource, current_tenant, operation

blueprint = Blueprint("{name}", __name__)
api = TenantApi(blueprint)
_kept = {{}}


class Leak(TenantResource):
    openapi = {{"get": operation("Leaks", {{200: {{"type": "object"}}}}, public=True)}}

    def get(self):
        # The classic mistake: "cache" a tenant's service in a module global.
        kept = _kept.setdefault("it", {what})
        return {{"seen": str({use})}}


api.add_resource(Leak, "/leak")
"""
LEAKS = {
    "storage": ("current_tenant.storage", "kept.root"),
    "config": ("current_app.config", 'kept["SLUG"]'),
    "database": ("current_tenant.database", "kept.current_revision()"),
    "database connection": (
        "current_tenant.database.engine",
        'kept.connect().exec_driver_sql("SELECT 1").scalar()',
    ),
    "cache": ("current_tenant.cache", 'kept.setdefault("seen", current_tenant.slug)'),
}


@pytest.mark.parametrize("kind", LEAKS)
def test_a_module_that_keeps_the_first_tenants_state_is_caught(home, write_module, kind):
    what, use = LEAKS[kind]
    leaky = write_module(LEAKY.replace("{what}", what).replace("{use}", use))
    problems = isolation_problems(home, ("landing", leaky))
    assert f"GET /leak: a request of iso-b used iso-a's {kind}" in problems, problems


LEAKY_JOB = """
from flask import Blueprint

from tenantry.endpoint import current_tenant, job

blueprint = Blueprint("{name}", __name__)
_kept = {{}}


@job
def tidy():
    # The same mistake in a job: a tenant's database kept for "the next run".
    _kept.setdefault("database", current_tenant.database).current_revision()


@job
def count(limit):
    return _kept.setdefault("config", current_tenant.config)["SLUG"][:limit]


schedules = {{"tidy": {{"every": 3600, "job": tidy}}}}
"""


def test_a_job_that_keeps_the_first_tenants_state_is_caught(home, write_module):
    """The schedules' jobs are run for A, B, A like the routes, and so are the jobs the
    caller names, with their arguments."""
    leaky = write_module(LEAKY_JOB)
    module = importlib.import_module(leaky)
    problems = isolation_problems(home, ("landing", leaky), jobs=[(module.count, (3,))])
    assert f"job {leaky}.tidy: a job of iso-b used iso-a's database" in problems, problems
    assert f"job {leaky}.count: a job of iso-b used iso-a's config" in problems, problems


def test_without_the_check_a_kept_storage_serves_one_tenants_root_to_another(
    home, client, make_tenant, write_module
):
    """What the check exists for: both tenants share the module, and the second gets the
    first one's storage."""
    leaky = write_module(
        LEAKY.replace("{what}", "current_tenant.storage").replace("{use}", "kept.root")
    )
    make_tenant("first", blueprints=(leaky,))
    make_tenant("second", blueprints=(leaky,))
    assert client.get("/first/leak").json["seen"].endswith("/first/storage")
    assert client.get("/second/leak").json["seen"].endswith("/first/storage")


# Structure -------------------------------------------------------------------------------

PLATFORM_MODULES = {"auth", "openapi"}  # they implement the platform's own tokens and spec


def _tenantry_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "tenantry"}


def test_builtin_modules_and_the_example_use_only_the_public_api():
    folders = [p for p in (SRC / "builtin").iterdir() if p.is_dir() and p.name[0] != "_"]
    checked = [p for p in folders if p.name not in PLATFORM_MODULES] + [EXAMPLE]
    assert len(checked) >= 6
    for folder in checked:
        for path in folder.rglob("*.py"):
            for name in _tenantry_imports(path):
                allowed = name == "tenantry.endpoint" or name.startswith("tenantry.builtin.")
                assert allowed, f"{path.relative_to(SRC.parent.parent)} imports {name}"


def test_endpoint_modules_import_each_other_without_a_cycle():
    folders = [p for p in (SRC / "builtin").iterdir() if p.is_dir() and p.name[0] != "_"]
    depends = {
        folder.name: {
            name.split(".")[2]
            for path in folder.rglob("*.py")
            for name in _tenantry_imports(path)
            if name.startswith("tenantry.builtin.") and name.split(".")[2] != folder.name
        }
        for folder in folders
    }
    assert "datasets" not in depends["files"]

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(
            dependency == target
            or (dependency not in seen and reaches(dependency, target, seen | {dependency}))
            for dependency in depends.get(start, ())
        )

    cycles = [module for module in depends if reaches(module, module, {module})]
    assert cycles == [], depends


def _tagged(tag: str):
    """A method decorator adding ``tag`` to the answer's tags."""

    def decorate(view):
        def wrapped(*args, **kwargs):
            data = view(*args, **kwargs)
            return {**data, "tags": [*data.get("tags", []), tag]}

        return wrapped

    return decorate


def test_resources_are_dispatched_as_flask_restful_dispatches_them(registry, client, acme):
    """TenantResource leaves out flask-restful's content negotiation only where there is
    nothing to negotiate: HEAD falls back to GET, method_decorators apply (a list, or a
    mapping by method), and a resource with representations of its own answers by them."""
    from flask import Blueprint, Response

    from tenantry.endpoint import TenantApi, TenantResource

    class Plain(TenantResource):
        method_decorators = [_tagged("all")]

        def get(self):
            return {"tenant": self.tenant.slug}

    class PerMethod(TenantResource):
        method_decorators = {"post": [_tagged("post")]}

        def get(self):
            return {"method": "get"}

        def post(self):
            return {"method": "post"}

    class Texty(TenantResource):
        representations = {
            "text/plain": lambda data, code, headers: Response(f"{data['n']}\n", code, headers)
        }

        def get(self):
            return {"n": 7}

    blueprint = Blueprint("dispatching", __name__)
    api = TenantApi(blueprint)
    api.add_resource(Plain, "/plain")
    api.add_resource(PerMethod, "/per-method")
    api.add_resource(Texty, "/texty")
    registry.lookup(acme).app.register_blueprint(blueprint)

    assert client.get("/acme/plain").json == {"tenant": "acme", "tags": ["all"]}
    head = client.head("/acme/plain")
    assert (head.status_code, head.data) == (200, b"")
    assert client.get("/acme/per-method").json == {"method": "get"}
    assert client.post("/acme/per-method").json == {"method": "post", "tags": ["post"]}
    assert client.delete("/acme/per-method").status_code == 405
    texty = client.get("/acme/texty", headers={"Accept": "text/plain"})
    assert (texty.mimetype, texty.get_data(as_text=True)) == ("text/plain", "7\n")
    assert client.get("/acme/texty", headers={"Accept": "application/json"}).json == {"n": 7}
