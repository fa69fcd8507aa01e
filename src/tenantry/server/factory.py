"""The application factory: one Flask app per tenant, built from its config class.

Every tenant gets its own app: its config, secret key, database, storage and token auth.
What is the same for every tenant with the same endpoint modules is built once per process,
by the first such app, and shared by the others as a :class:`RouteKit`: the compiled route
table, the view functions (resources find their tenant through the serving app, see
:class:`tenantry.endpoint.TenantResource`) and the blueprints they came from. None of it holds
tenant state, and an app that adds a route later gets private copies first. Building the
route table was three quarters of an app's build time and most of its memory.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from flask import Blueprint, Flask, Response, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import Map

from tenantry.config import TenantConfig
from tenantry.data.db import tenant_database
from tenantry.home.env import read_secrets
from tenantry.home.layout import TenantHome
from tenantry.home.settings import tenant_modules, tenant_settings
from tenantry.jobs.api import TenantJobs
from tenantry.jobs.place import jobs_store
from tenantry.modules.checks import route_problems, undeclared_notes
from tenantry.modules.loader import EndpointModule
from tenantry.server.limits import RequestLimits
from tenantry.storage.errors import ObjectStoreError
from tenantry.storage.objects import tenant_storage
from tenantry.web.api import no_content
from tenantry.web.auth import init_praetorian
from tenantry.web.errors import register_error_handlers
from tenantry.web.openapi import undeclared_routes
from tenantry.web.schemas import ModelJSONProvider
from tenantry.web.tenant import Tenant

log = logging.getLogger(__name__)


def create_app(config_class: type[TenantConfig], home: TenantHome) -> Flask:
    """Build the app of the tenant that ``config_class`` describes.

    :raises TenantConfigError: the config class or the tenant's secrets are invalid.
    :raises SQLAlchemyError: the tenant's database cannot be opened or migrated.
    """
    slug = config_class.SLUG
    settings = tenant_settings(config_class, read_secrets(home, slug), home.instance_dir(slug))
    modules = tenant_modules(config_class)
    app = TenantFlask("tenantry", instance_path=settings["INSTANCE_PATH"], static_folder=None)
    app.config.from_mapping(settings)
    configure_routing(app)
    register_extensions(app, home, modules)
    register_error_handlers(app)
    register_blueprints(app, modules)
    require_declarations(app)
    register_limits(app)
    return app


def prepare_route_kit(modules: tuple[EndpointModule, ...]) -> None:
    """Build the shared routes of these modules now, on an app of no tenant, so that the
    apps built later (in this process, or in processes forked from it: a job runner's)
    take them ready-made.

    :raises RuntimeError: as :func:`register_blueprints`.
    """
    if tuple(module.key for module in modules) in _route_kits:
        return
    app = TenantFlask("tenantry", static_folder=None)
    configure_routing(app)
    register_error_handlers(app)
    register_blueprints(app, modules)


def require_declarations(app: Flask) -> None:
    """A tenant that sets ``OPENAPI_STRICT`` serves no route its module left undeclared.

    :raises RuntimeError: naming each undeclared operation (the tenant answers 503).
    """
    if app.config["OPENAPI_STRICT"]:
        undeclared = undeclared_routes(app)
        if undeclared:
            raise RuntimeError("; ".join(undeclared_notes(undeclared, strict=True)))


def register_limits(app: Flask) -> None:
    """Keep the tenant to its share of the worker: concurrency and rate limits."""
    config = app.config
    app.wsgi_app = RequestLimits(
        app.wsgi_app,
        config["SLUG"],
        config["MAX_CONCURRENT_REQUESTS"],
        config["RATE_LIMIT"],
        small_body=config["MAX_JSON_BODY"],
    )


@dataclass(frozen=True)
class RouteKit:
    """The routes of every app with one set of endpoint modules: never changed once built.
    ``hooks`` are the blueprints' own request hooks (``before_request`` of a module's
    blueprint, say), by app attribute and blueprint name: registration put them on the
    first app only, and every app of the kit must run them."""

    url_map: Map
    view_functions: Mapping
    blueprints: Mapping[str, Blueprint]
    hooks: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict)


# By the endpoint modules' names (as imported), in the order the app registers them.
_route_kits: dict[tuple[str, ...], RouteKit] = {}
_route_kits_lock = threading.Lock()

# Where blueprint registration could leave per-app hooks that a shared kit would not carry.
_HOOK_ATTRIBUTES = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "url_value_preprocessors",
    "url_default_functions",
    "template_context_processors",
    "error_handler_spec",
)


class TenantFlask(Flask):
    """Flask, with answers that read the same in every worker process, and routes that may
    come from a shared :class:`RouteKit` (copied before this app changes them)."""

    kit: RouteKit | None = None

    def use_kit(self, kit: RouteKit) -> None:
        self.kit = kit
        self.url_map = kit.url_map
        self.view_functions = kit.view_functions
        self.blueprints = kit.blueprints
        for attribute, scopes in kit.hooks.items():
            hooks = getattr(self, attribute)
            for scope, functions in scopes.items():
                hooks[scope] = list(functions)

    def add_url_rule(self, *args, **kwargs) -> None:
        self._own_routes()
        super().add_url_rule(*args, **kwargs)

    def register_blueprint(self, *args, **kwargs) -> None:
        self._own_routes()
        super().register_blueprint(*args, **kwargs)

    def _own_routes(self) -> None:
        """Trade the shared kit for private copies before this app changes its routes."""
        if self.kit is None:
            return
        self.url_map = _private_copy(self.kit.url_map)
        self.view_functions = dict(self.kit.view_functions)
        self.blueprints = dict(self.kit.blueprints)
        self.kit = None

    def make_default_options_response(self) -> Response:
        # Flask builds Allow from a set, whose order differs between processes.
        allowed = super().make_default_options_response().allow
        response = no_content()
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response


class TenantSessionInterface(SecureCookieSessionInterface):
    """Scopes any session cookie to the tenant's own root, wherever it is mounted, and
    does not build a signing serializer for requests that bring no session cookie (the
    API uses tokens, so that is every request; it was a third of a request's cost)."""

    def get_cookie_path(self, app: Flask) -> str:
        return (request.script_root or "") + "/"

    def open_session(self, app: Flask, request):
        if "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        # Nothing to send for a session nobody touched (every API request): Flask's own
        # would first work out the cookie's name, domain, path and flags, ~7 calls.
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)


def configure_routing(app: Flask) -> None:
    """Answer paths as given: no redirects to merge slashes or add a trailing one."""
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.json = ModelJSONProvider(app)
    app.json.sort_keys = False
    app.session_interface = TenantSessionInterface()


def register_extensions(app: Flask, home: TenantHome, modules: tuple[EndpointModule, ...]) -> None:
    """Attach the tenant's database (migrated, with the tables of its modules), storage,
    praetorian guard (tokens), and the :class:`~tenantry.endpoint.Tenant` that endpoint
    modules see."""
    slug = app.config["SLUG"]
    storage = tenant_storage(app.config["STORAGE_ROOT"], slug)
    storage.ensure(parents=True)
    try:
        storage.sweep_incoming()
    except ObjectStoreError:  # a store away now must not keep the tenant's app down
        log.warning("sweeping the uploads of %s failed", slug, exc_info=True)
    database = tenant_database(home, slug)
    tenant = Tenant(
        slug=slug,
        name=app.config["NAME"],
        config=app.config,
        database=database,
        storage=storage,
        modules=tuple(module.key for module in modules),
        reference_checks=tuple(m.file_references for m in modules if m.file_references),
        jobs=TenantJobs(
            slug=slug,
            store=functools.partial(jobs_store, home.tenants_dir),
            modules=tuple(module.key for module in modules),
            config=app.config,
        ),
    )
    database.ensure_current(modules, tenant)
    app.extensions["tenantry.storage"] = storage
    app.extensions["tenantry.db"] = database
    app.extensions["tenantry.tenant"] = tenant
    init_praetorian(app)


def register_blueprints(app: TenantFlask, modules: tuple[EndpointModule, ...]) -> None:
    """Give the app the routes of its endpoint modules (the others have no routes at all):
    the shared kit of these modules, or, for the first such app of the process, its own
    registration, which then becomes the kit.

    :raises RuntimeError: an endpoint module registers hooks a shared kit would not carry.
    """
    key = tuple(module.key for module in modules)
    kit = _route_kits.get(key)
    if kit is not None:
        app.use_kit(kit)
        return
    before = _hooks(app)
    for module in modules:
        app.url_map.converters.update(module.converters)
    for module in modules:
        app.register_blueprint(module.blueprint)
    added = _added_hooks(before, _hooks(app))
    app_wide = {name for name, scopes in added.items() if None in scopes}
    if app_wide or "error_handler_spec" in added:
        names = ", ".join(module.name for module in modules)
        found = ", ".join(sorted(app_wide | (set(added) & {"error_handler_spec"})))
        raise RuntimeError(
            f"endpoint modules {names} register app-wide hooks or error handlers ({found}): "
            "use the blueprint's own request hooks, or method_decorators"
        )
    problems = route_problems(modules, app)
    if problems:
        raise RuntimeError("; ".join(problems))
    app.url_map.update()  # compile now, not under the first request
    # Read-only views of both: code that writes to them directly (say, ``app.endpoint``)
    # fails loudly instead of changing every tenant. The Map itself must be left alone.
    kit = RouteKit(
        app.url_map,
        MappingProxyType(app.view_functions),
        MappingProxyType(app.blueprints),
        MappingProxyType(added),
    )
    with _route_kits_lock:
        app.use_kit(_route_kits.setdefault(key, kit))


def _hooks(app: Flask) -> dict:
    """Every hook the app has, by attribute and scope (empty containers left out)."""
    hooks = {name: _non_empty(getattr(app, name)) for name in _HOOK_ATTRIBUTES}
    # Every blueprint brings Flask's default template context processor, which the app
    # has already: a copy under the blueprint's name adds nothing.
    processors = hooks["template_context_processors"]
    app_wide = processors.get(None, [])
    hooks["template_context_processors"] = {
        scope: functions
        for scope, functions in processors.items()
        if scope is None or any(function not in app_wide for function in functions)
    }
    return hooks


def _added_hooks(before: dict, after: dict) -> dict[str, dict]:
    """The hooks registration added, by attribute and scope (a blueprint's name, or None
    for the whole app), each scope's functions as a tuple. Template context processors
    are left out: tenants answer JSON."""
    added: dict[str, dict] = {}
    for attribute, scopes in after.items():
        if attribute == "template_context_processors":
            continue
        for scope, functions in scopes.items():
            if functions != before.get(attribute, {}).get(scope):
                added.setdefault(attribute, {})[scope] = (
                    functions if isinstance(functions, dict) else tuple(functions)
                )
    return added


def _non_empty(value):
    if isinstance(value, dict):
        return {key: _non_empty(item) for key, item in value.items() if _non_empty(item)}
    return list(value) if isinstance(value, list) else value


def _private_copy(routes: Map) -> Map:
    """A new, unshared Map with the same rules and settings."""
    copy = Map(
        strict_slashes=routes.strict_slashes,
        merge_slashes=routes.merge_slashes,
        host_matching=routes.host_matching,
        default_subdomain=routes.default_subdomain,
    )
    copy.converters = dict(routes.converters)
    for rule in routes.iter_rules():
        clone = rule.empty()
        clone.provide_automatic_options = rule.provide_automatic_options
        copy.add(clone)
    return copy
