"""A module author's first day: an ordinary Flask blueprint plugs in as it is, a pydantic
model validates and documents a body at once, and a module's ``seed`` gives each tenant its
first rows when its tables are made."""

from __future__ import annotations

import pytest

from tenantry.data.db import tenant_database
from tenantry.ops.checks import check_tenants
from tenantry.ops.errors import TenantError
from tenantry.ops.gc import collect_garbage
from tenantry.ops.lifecycle import create_tenant
from tenantry.ops.migrate import migrate_tenants
from tests.test_endpoint_modules import add_to_config, set_blueprints

# An ordinary Flask blueprint, as a team has it before tenantry: plain views, a
# flask-restful style resource without any ``openapi``; nothing added but being importable.
PLAIN = """
from flask import Blueprint, jsonify, request
from tenantry.endpoint import TenantApi, TenantResource, current_tenant

blueprint = Blueprint("{name}", __name__)


@blueprint.route("/plain")
def plain():
    return {{"tenant": current_tenant.slug, "q": request.args.get("q")}}


@blueprint.route("/plain/<int:number>", methods=["GET", "PUT"])
def numbered(number):
    return jsonify(number=number, method=request.method)


class Undeclared(TenantResource):
    def get(self):
        return {{"undeclared": True}}

    def post(self):
        return {{"posted": True}}, 201


TenantApi(blueprint).add_resource(Undeclared, "/undeclared")
"""

# A module that declares its body and query once, with pydantic.
TYPED = """
from flask import Blueprint
from pydantic import BaseModel, Field
from tenantry.endpoint import TenantApi, TenantResource, json_object, operation, query_object

blueprint = Blueprint("{name}", __name__)


class Address(BaseModel):
    city: str = Field(min_length=1)


class OrderIn(BaseModel):
    item: str = Field(min_length=1, max_length=20)
    quantity: int = Field(ge=1, le=10)
    ship_to: Address


class OrderOut(BaseModel):
    item: str
    quantity: int
    city: str


class Search(BaseModel):
    limit: int = Field(default=5, ge=1, le=50)
    tag: list[str] = []


class Orders(TenantResource):
    openapi = {{
        "post": operation("Order", {{201: OrderOut}}, body=OrderIn, public=True),
        "get": operation("Search", {{200: {{"type": "object"}}}}, query=Search, public=True),
    }}

    def post(self):
        order = json_object(OrderIn)
        return OrderOut(item=order.item, quantity=order.quantity, city=order.ship_to.city), 201

    def get(self):
        search = query_object(Search)
        return {{"limit": search.limit, "tag": search.tag}}


TenantApi(blueprint).add_resource(Orders, "/orders")
"""

# A module whose tables start with rows of their own.
SEEDED = """
from flask import Blueprint
from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column
from tenantry.endpoint import Base, TenantApi, TenantResource, current_tenant, operation

blueprint = Blueprint("{name}", __name__)
settings = {{"{upper}_DEFAULT_PLAN": "basic"}}
SEEDS = []


class Plan{name}(Base):
    __tablename__ = "{name}_plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


def seed(tenant):
    SEEDS.append(tenant.slug)
    if tenant.config.get("FAIL_SEED"):
        with tenant.database.transaction() as session:
            session.add(Plan{name}(name="half-written"))
        raise RuntimeError("seeding failed on purpose")
    with tenant.database.transaction() as session:
        session.add(Plan{name}(name=tenant.config["{upper}_DEFAULT_PLAN"]))
        session.add(Plan{name}(name=tenant.slug + "-own"))


class Plans(TenantResource):
    openapi = {{"get": operation("Plans", {{200: {{"type": "object"}}}}, public=True)}}

    def get(self):
        query = select(Plan{name}.name).order_by(Plan{name}.id)
        with current_tenant.database.transaction() as session:
            return {{"plans": list(session.scalars(query))}}


TenantApi(blueprint).add_resource(Plans, "/plans")
"""


# -- undeclared routes ----------------------------------------------------------------------


def test_an_ordinary_blueprint_is_served_and_listed(home, client, make_tenant, write_module):
    module = write_module(PLAIN)
    make_tenant("shop", blueprints=("landing", module))
    make_tenant("other", blueprints=("landing",))
    assert client.get("/shop/plain?q=1").json == {"tenant": "shop", "q": "1"}
    assert client.put("/shop/plain/7").json == {"number": 7, "method": "PUT"}
    assert client.get("/shop/undeclared").json == {"undeclared": True}
    assert client.post("/shop/undeclared").status_code == 201
    assert client.get("/shop/").status_code == 200  # landing and login are not taken down
    paths = client.get("/shop/openapi.json").json["paths"]
    assert set(paths["/plain"]) == {"get"}
    assert set(paths["/plain/{number}"]) == {"get", "put"}
    assert paths["/plain/{number}"]["put"]["parameters"][0]["name"] == "number"
    assert set(paths["/undeclared"]) == {"get", "post"}
    # Cross-tenant: a tenant without the module has none of it.
    for path in ("/other/plain", "/other/undeclared", "/other/plain/7"):
        missing = client.get(path)
        assert (missing.status_code, missing.json["error"]) == (404, "not_found")
    assert "/plain" not in client.get("/other/openapi.json").json["paths"]


def test_check_warns_of_undeclared_routes_and_exits_0(home, make_tenant, write_module, tenantry):
    module = write_module(PLAIN)
    make_tenant("shop", blueprints=("landing", module))
    check = check_tenants(home)["shop"]
    assert check.problems == []
    assert any(f"GET /plain ({module}.plain) is not declared" in w for w in check.warnings)
    assert any("POST /undeclared" in warning for warning in check.warnings)
    result = tenantry("tenants", "check")
    assert result.exit_code == 0, result.output
    assert f"shop: warning: GET /plain ({module}.plain) is not declared" in result.output
    assert "shop: ok" in result.output


def test_openapi_strict_refuses_undeclared_routes(
    home, client, make_tenant, write_module, tenantry
):
    module = write_module(PLAIN)
    make_tenant("shop", blueprints=("landing", module))
    make_tenant("lax", blueprints=("landing", module))
    add_to_config(home, "shop", "OPENAPI_STRICT = True")
    refused = client.get("/shop/")
    assert (refused.status_code, refused.json["error"]) == (503, "service_unavailable")
    assert "Traceback" not in refused.get_data(as_text=True)
    assert client.get("/lax/plain").status_code == 200  # the same module, not strict
    check = check_tenants(home)
    assert any("GET /plain" in problem for problem in check["shop"].problems)
    assert check["lax"].problems == []
    result = tenantry("tenants", "check", "shop")
    assert result.exit_code == 1
    assert "OPENAPI_STRICT is set" in result.output


def test_openapi_strict_must_be_a_bool(home, client, acme):
    add_to_config(home, "acme", 'OPENAPI_STRICT = "yes"')
    assert client.get("/acme/").status_code == 503
    assert "OPENAPI_STRICT must be True or False" in check_tenants(home)["acme"].problems


HOOKED = """
from flask import Blueprint, g, request
from werkzeug.exceptions import Forbidden
from tenantry.endpoint import current_tenant

blueprint = Blueprint("{name}", __name__)


@blueprint.before_request
def require_a_key():
    # An existing blueprint's own guard: every tenant sharing the routes must run it.
    if request.headers.get("X-Key") != current_tenant.slug + "-key":
        raise Forbidden("This blueprint wants its key.")
    g.seen_by = current_tenant.slug


@blueprint.after_request
def stamp(response):
    response.headers["X-Served-For"] = current_tenant.slug
    return response


@blueprint.route("/guarded")
def guarded():
    return {{"seen_by": g.seen_by}}
"""


def test_a_blueprints_own_request_hooks_run_for_every_tenant_sharing_it(
    client, make_tenant, write_module
):
    module = write_module(HOOKED)
    for slug in ("one", "two", "three"):  # one route kit: registered by the first only
        make_tenant(slug, blueprints=("landing", module))
    for slug in ("one", "two", "three"):
        refused = client.get(f"/{slug}/guarded")
        assert (refused.status_code, refused.json["error"]) == (403, "forbidden")
        foreign = client.get(f"/{slug}/guarded", headers={"X-Key": "one-key"})
        assert foreign.status_code == (200 if slug == "one" else 403)
        served = client.get(f"/{slug}/guarded", headers={"X-Key": f"{slug}-key"})
        assert served.json == {"seen_by": slug}
        assert served.headers["X-Served-For"] == slug
        # The hooks are the blueprint's: the tenant's other routes do not run them.
        landing = client.get(f"/{slug}/")
        assert landing.status_code == 200 and "X-Served-For" not in landing.headers


# -- pydantic --------------------------------------------------------------------------------


def test_a_pydantic_body_is_validated_and_names_the_failing_fields(
    client, make_tenant, write_module
):
    module = write_module(TYPED)
    make_tenant("shop", blueprints=(module,))
    good = {"item": "pen", "quantity": 2, "ship_to": {"city": "Oslo"}}
    created = client.post("/shop/orders", json=good)
    assert (created.status_code, created.json) == (
        201,
        {"item": "pen", "quantity": 2, "city": "Oslo"},
    )
    bad = client.post("/shop/orders", json={"item": "", "quantity": 11, "ship_to": {}})
    assert (bad.status_code, bad.json["error"]) == (400, "bad_request")
    assert sorted(error["field"] for error in bad.json["fields"]) == [
        "item",
        "quantity",
        "ship_to.city",
    ]
    assert "quantity" in bad.json["message"]
    for body in (b"[1]", b"{broken", b'"text"'):
        refused = client.post("/shop/orders", data=body, content_type="application/json")
        assert (refused.status_code, refused.json["error"]) == (400, "bad_request")
        assert "fields" not in refused.json  # not an object at all


def test_a_pydantic_query_is_validated(client, make_tenant, write_module):
    module = write_module(TYPED)
    make_tenant("shop", blueprints=(module,))
    assert client.get("/shop/orders").json == {"limit": 5, "tag": []}
    assert client.get("/shop/orders?limit=7&tag=a&tag=b").json == {"limit": 7, "tag": ["a", "b"]}
    bad = client.get("/shop/orders?limit=500")
    assert bad.status_code == 400
    assert [error["field"] for error in bad.json["fields"]] == ["limit"]


def test_pydantic_models_document_the_operation(client, make_tenant, write_module):
    module = write_module(TYPED)
    make_tenant("shop", blueprints=(module,))
    spec = client.get("/shop/openapi.json").json
    post = spec["paths"]["/orders"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["item", "quantity", "ship_to"]
    assert body["properties"]["quantity"] == {
        "maximum": 10,
        "minimum": 1,
        "title": "Quantity",
        "type": "integer",
    }
    assert body["properties"]["ship_to"] == {"$ref": "#/components/schemas/Address"}
    assert spec["components"]["schemas"]["Address"]["required"] == ["city"]
    assert "Error" in spec["components"]["schemas"]
    assert {"400", "201"} <= set(post["responses"])
    parameters = {p["name"]: p for p in spec["paths"]["/orders"]["get"]["parameters"]}
    assert parameters["limit"]["in"] == "query" and not parameters["limit"]["required"]
    assert parameters["tag"]["schema"]["type"] == "array"


# -- seeding --------------------------------------------------------------------------------


def plans(client, slug: str, module: str) -> list[str]:
    response = client.get(f"/{slug}/plans")
    assert response.status_code == 200, response.json
    return response.json["plans"]


def test_seed_runs_once_when_a_tenant_is_created(home, client, registry, make_tenant, write_module):
    module = write_module(SEEDED.replace("{upper}", "SEEDED"))
    make_tenant("shop", blueprints=(module,))
    make_tenant("mall", blueprints=(module,))
    seeds = __import__(module).SEEDS
    assert seeds == ["shop", "mall"]  # at create, before any request
    assert plans(client, "shop", module) == ["basic", "shop-own"]
    assert plans(client, "mall", module) == ["basic", "mall-own"]
    add_to_config(home, "shop", "NAME = 'Shop again'")  # a rebuild of its app
    assert client.get("/shop/").status_code in (200, 404)
    assert migrate_tenants(home)
    assert plans(client, "shop", module) == ["basic", "shop-own"]
    assert seeds == ["shop", "mall"]  # re-run by nothing


def test_seed_runs_when_a_module_is_first_enabled(home, client, make_tenant, write_module):
    module = write_module(SEEDED.replace("{upper}", "SEEDED"))
    make_tenant("shop", blueprints=("landing",))
    add_to_config(home, "shop", "SEEDED_DEFAULT_PLAN = 'gold'")
    set_blueprints(home, "shop", ("landing", module))
    assert plans(client, "shop", module) == ["gold", "shop-own"]  # the tenant's own setting
    set_blueprints(home, "shop", ("landing",))  # disabled: its data stays
    assert client.get("/shop/plans").status_code == 404
    set_blueprints(home, "shop", ("landing", module))
    assert plans(client, "shop", module) == ["gold", "shop-own"]
    assert __import__(module).SEEDS == ["shop"]


def test_a_failing_seed_leaves_no_tables(home, client, make_tenant, write_module):
    module = write_module(SEEDED.replace("{upper}", "SEEDED"))
    make_tenant("shop", blueprints=("landing",))
    add_to_config(home, "shop", "FAIL_SEED = True")
    set_blueprints(home, "shop", ("landing", module))
    refused = client.get("/shop/plans")
    assert (refused.status_code, refused.json["error"]) == (503, "service_unavailable")
    database = tenant_database(home, "shop")
    try:
        assert f"{module}_plans" not in database.table_names()  # nor its half-written row
    finally:
        database.dispose()
    path = home.config_file("shop")
    path.write_text(path.read_text().replace("FAIL_SEED = True", "FAIL_SEED = False"))
    assert plans(client, "shop", module) == ["basic", "shop-own"]


def test_a_failing_seed_fails_create_and_writes_nothing(home, write_module, monkeypatch):
    module = write_module(
        SEEDED.replace("{upper}", "SEEDED").replace('tenant.config.get("FAIL_SEED")', "True")
    )
    with pytest.raises(Exception, match="seeding failed on purpose"):
        create_tenant(home, "shop", blueprints=(module,))
    assert not home.config_file("shop").exists()
    assert not home.instance_dir("shop").exists()


def test_settings_given_at_create_are_written_and_reach_the_seed(home, client, write_module):
    module = write_module(SEEDED.replace("{upper}", "SEEDED"))
    create_tenant(home, "shop", blueprints=(module,), settings={"SEEDED_DEFAULT_PLAN": "gold"})
    assert plans(client, "shop", module) == ["gold", "shop-own"]
    assert 'SEEDED_DEFAULT_PLAN = "gold"' in home.config_file("shop").read_text().replace("'", '"')
    refused = {
        "SEEDED_DEFAULT_PLAN must be str": {"SEEDED_DEFAULT_PLAN": 5},
        "UPPER_CASE name": {"lower": 1},
        "other than SLUG": {"SLUG": "other"},
        "must be a Python literal": {"WHEN": object()},
        "MAX_JSON_BODY must be a positive integer": {"MAX_JSON_BODY": -1},
    }
    for message, settings in refused.items():
        with pytest.raises(TenantError, match=message):
            create_tenant(home, "mall", blueprints=(module,), settings=settings)
        assert not home.config_file("mall").exists() and not home.instance_dir("mall").exists()


# -- what a review of the first version found -------------------------------------------------

EDGES = """
from decimal import Decimal
from typing import Optional

from flask import Blueprint
from pydantic import BaseModel, Field
from tenantry.endpoint import TenantApi, TenantResource, json_object, operation, query_object

blueprint = Blueprint("{name}", __name__)


class Money(BaseModel):
    amount: Decimal


class Error(BaseModel):  # the platform's name too
    code: int


class Priced(BaseModel):
    created_at: int = Field(alias="createdAt")
    price: Money
    errors: list[Error] = []


class Basket(BaseModel):
    money: Money


class Filter(BaseModel):
    tags: Optional[list[str]] = None
    text: Optional[str] = Field(default=None, validation_alias="search")


class Numbers(BaseModel):
    xs: list[int]


class Prices(TenantResource):
    openapi = {{
        "post": operation("Price", {{200: list[Priced]}}, body=Basket, public=True),
        "get": operation("Filter", {{200: {{"type": "object"}}}}, query=Filter, public=True),
    }}

    def post(self):
        money = json_object(Basket).money
        return [Priced(createdAt=1, price=money)]

    def get(self):
        found = query_object(Filter)
        return {{"tags": found.tags, "text": found.text}}


class Sum(TenantResource):
    openapi = {{"post": operation("Sum", {{200: {{"type": "object"}}}}, body=Numbers, public=True)}}

    def post(self, kind=None):
        return {{"sum": sum(json_object(Numbers).xs)}}


def declared_view():
    return {{"plain": True}}


declared_view.openapi = {{"get": operation("Declared", {{200: {{"type": "object"}}}}, public=True)}}
blueprint.add_url_rule("/declared", view_func=declared_view)
api = TenantApi(blueprint)
api.add_resource(Prices, "/prices")
api.add_resource(Sum, "/sum", "/sum/<kind>")
"""


def test_answers_and_documents_agree_on_models(home, client, make_tenant, write_module):
    module = write_module(EDGES)
    make_tenant("shop", blueprints=(module,))
    answer = client.post("/shop/prices", json={"money": {"amount": "1.5"}})
    assert answer.json == [{"createdAt": 1, "price": {"amount": "1.5"}, "errors": []}]
    spec = client.get("/shop/openapi.json").json
    schemas = spec["components"]["schemas"]
    ok = spec["paths"]["/prices"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["items"] == {"$ref": "#/components/schemas/Priced"}
    assert "createdAt" in schemas["Priced"]["properties"]  # by alias, as answered
    # Money's request and answer schemas differ (a Decimal): both are there.
    answered = schemas["Priced"]["properties"]["price"]["$ref"].rpartition("/")[2]
    body = spec["paths"]["/prices"]["post"]["requestBody"]["content"]["application/json"]
    sent = body["schema"]["properties"]["money"]["$ref"].rpartition("/")[2]
    assert {answered, sent} == {"Money", "Money-Input"}
    assert schemas[answered]["properties"]["amount"]["type"] == "string"
    assert "anyOf" in schemas[sent]["properties"]["amount"]  # a number or a string
    # The platform's Error stays the error shape; check says a module's clashes with it.
    assert schemas["Error"]["required"] == ["error", "message"]
    warnings = check_tenants(home)["shop"].warnings
    assert any("'Error'" in warning for warning in warnings), warnings


def test_query_models_take_optional_lists_and_aliases(client, make_tenant, write_module):
    module = write_module(EDGES)
    make_tenant("shop", blueprints=(module,))
    found = client.get("/shop/prices?tags=a&tags=b&search=hello").json
    assert found == {"tags": ["a", "b"], "text": "hello"}
    parameters = client.get("/shop/openapi.json").json["paths"]["/prices"]["get"]["parameters"]
    assert [parameter["name"] for parameter in parameters] == ["tags", "search"]


def test_a_huge_invalid_body_gets_a_bounded_answer(client, make_tenant, write_module):
    module = write_module(EDGES)
    make_tenant("shop", blueprints=(module,))
    refused = client.post("/shop/sum", json={"xs": ["a"] * 50_000})
    assert refused.status_code == 400
    assert len(refused.json["fields"]) == 20 and refused.json["more_fields"] == 49_980
    assert len(refused.get_data()) < 10_000
    assert "(and 49997 more)" in refused.json["message"]


def test_a_plain_view_may_declare_and_declared_routes_get_their_path_parameters(
    home, client, make_tenant, write_module
):
    module = write_module(EDGES)
    make_tenant("shop", blueprints=(module,))
    paths = client.get("/shop/openapi.json").json["paths"]
    assert paths["/declared"]["get"]["summary"] == "Declared"
    assert [p["name"] for p in paths["/sum/{kind}"]["post"]["parameters"]] == ["kind"]
    assert "parameters" not in paths["/sum"]["post"]
    assert not any("not declared" in warning for warning in check_tenants(home)["shop"].warnings)


def test_a_sweep_before_the_first_build_leaves_the_seed_its_tables(
    home, client, make_tenant, write_module
):
    module = write_module(SEEDED.replace("{upper}", "SEEDED"))
    make_tenant("shop", blueprints=("landing", "files"))
    set_blueprints(home, "shop", ("landing", "files", module))
    collect_garbage(home)  # what the server's sweep runs every few minutes
    database = tenant_database(home, "shop")
    try:
        assert f"{module}_plans" not in database.table_names()
    finally:
        database.dispose()
    assert plans(client, "shop", module) == ["basic", "shop-own"]


def test_a_seed_through_the_engine_is_refused_and_leaves_no_tables(
    home, client, make_tenant, write_module
):
    source = SEEDED.replace("{upper}", "SEEDED").replace(
        "    SEEDS.append(tenant.slug)\n", "    SEEDS.append(tenant.database.engine)\n"
    )
    module = write_module(source)
    make_tenant("shop", blueprints=("landing",))
    set_blueprints(home, "shop", ("landing", module))
    assert client.get("/shop/plans").status_code == 503
    assert "tenant.database.transaction()" in migrate_tenants(home)["shop"]
    database = tenant_database(home, "shop")
    try:
        assert f"{module}_plans" not in database.table_names()
    finally:
        database.dispose()


def test_create_refuses_settings_that_are_no_settings(home, write_module):
    plain = write_module(PLAIN)
    for settings, message in (
        ({"SECRET_KEY": "k" * 64}, "SECRET_KEY is not a setting"),
        ({"STORAGE_ROOT": "/elsewhere"}, "STORAGE_ROOT is not a setting"),
        ({"OPENAPI_STRICT": True}, "OPENAPI_STRICT is set"),
    ):
        with pytest.raises(TenantError, match=message):
            create_tenant(home, "shop", blueprints=("landing", plain), settings=settings)
        assert not home.config_file("shop").exists()


def test_a_schema_no_json_schema_describes_fails_the_modules_import(home, write_module):
    module = write_module(
        """
        from dataclasses import dataclass
        from flask import Blueprint
        from tenantry.endpoint import TenantApi, TenantResource, operation

        blueprint = Blueprint("{name}", __name__)


        class Opaque:
            pass


        class Thing(TenantResource):
            openapi = {{"post": operation("Takes a thing", {{200: None}}, body=Opaque)}}


        TenantApi(blueprint).add_resource(Thing, "/thing")
        """
    )
    with pytest.raises(TenantError, match="operation 'Takes a thing'"):
        create_tenant(home, "shop", blueprints=(module,))
