"""Endpoint modules: what a tenant's ``BLUEPRINTS`` name, found, imported and checked.

A name in ``BLUEPRINTS`` is a built-in short name (``files``), the dotted import path of a
module (``myapp.notes``), or a name an installed package registers in the entry-point group
``tenantry.endpoints``. Each module is imported once per process and shared by every tenant
that enables it; :func:`load_module` checks here, once, that it has nothing that could tie
it to one tenant (see :func:`_deferred_problems`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType, ModuleType

from flask import Blueprint, Flask
from flask_restful import Api
from sqlalchemy.orm import configure_mappers
from werkzeug.routing import BaseConverter

from tenantry.config import ALL_BLUEPRINTS, TenantConfig
from tenantry.data.db import PG_MAX_NAME, Base
from tenantry.jobs.schedules import Schedule, module_schedules
from tenantry.support.errors import PlatformError

BUILTIN_PACKAGE = "tenantry.builtin"
# The built-ins a tenant may name, in the order a tenant's list shows them.
BUILTIN_NAMES = ALL_BLUEPRINTS
ALWAYS_ON = ("auth", "status")
# Built-ins no tenant names: present because another module requires them, or always.
INTERNAL_NAMES = ("links", "openapi")
ALWAYS_LAST = ("openapi",)
ENTRY_POINT_GROUP = "tenantry.endpoints"

SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# Config names of the libraries the platform configures per tenant.
PLATFORM_PREFIXES = ("JWT_", "PRAETORIAN_", "SESSION_", "TENANTRY_")
VERSION_TABLE_PREFIX = "alembic_version_"


class EndpointModuleError(PlatformError):
    """An endpoint module cannot be used: not found, failed to import, or malformed."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"endpoint module {name!r}: {reason}")


@dataclass(frozen=True)
class EndpointModule:
    """One endpoint module, as every tenant that enables it shares it."""

    name: str
    key: str  # the Python module's name: the same module under any of its names
    blueprint: Blueprint
    package: str = ""  # where its models live: its package (its own name if it is one)
    settings: Mapping[str, object] = field(default_factory=dict)
    migrations: Path | None = None
    requires: tuple[str, ...] = ()
    converters: Mapping[str, type[BaseConverter]] = field(default_factory=dict)
    file_references: Callable | None = None
    sweep: Callable | None = None
    seed: Callable | None = None  # seed(tenant): its first rows, once per tenant
    # stats(database, tables): its figures for `tenants stats`, read without writing
    stats: Callable | None = None
    schedules: tuple[Schedule, ...] = ()  # its jobs run once per period for each tenant
    # check_row(table, row): what is wrong with a row of its tables an archive brings
    check_row: Callable | None = None

    @property
    def is_builtin(self) -> bool:
        """Built-ins keep their tables in the platform's own migrations."""
        return self.key.startswith(BUILTIN_PACKAGE + ".")

    @property
    def version_table(self) -> str:
        """The table holding this module's alembic revision in each tenant's database."""
        name = VERSION_TABLE_PREFIX + re.sub(
            r"[^a-z0-9_]", "_", self.key.lower().replace(".", "__")
        )
        if len(name) <= PG_MAX_NAME:
            return name
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:10]
        return f"{name[: PG_MAX_NAME - 11]}_{digest}"

    def tables(self) -> list:
        """The tables of the models declared on :class:`tenantry.data.db.Base` in this module's
        package (the module itself, when it is a package or stands alone)."""
        return [mapper.local_table for mapper in _models_of(self.package or self.key)]


def _models_of(package: str) -> list:

    prefix = package + "."
    return [
        mapper
        for mapper in Base.registry.mappers
        if mapper.class_.__module__ == package or mapper.class_.__module__.startswith(prefix)
    ]


_loaded: dict[str, EndpointModule | EndpointModuleError] = {}
_loaded_lock = threading.Lock()
_name_locks: dict[str, threading.Lock] = {}


def load_module(name: str) -> EndpointModule:
    """The endpoint module ``name`` names, imported and checked (once per process).

    :raises EndpointModuleError: unknown name, failed import, or a malformed module.
    """
    module = _loaded.get(name)
    if module is not None:
        if isinstance(module, EndpointModuleError):
            raise module
        return module
    with _loaded_lock:
        lock = _name_locks.setdefault(name, threading.Lock())
    # One lock per name: a module that is slow to import holds up only its own tenants.
    with lock:
        if name not in _loaded:
            try:
                _loaded[name] = _describe(name, _import(name))
            except EndpointModuleError as exc:
                # Imported once per process, like any module: a second import of a module
                # that failed halfway would fail for another, misleading reason.
                _loaded[name] = exc
        return load_module(name)


def resolve_modules(names: Iterable[str]) -> tuple[EndpointModule, ...]:
    """Every endpoint module a tenant with these ``BLUEPRINTS`` has: its own in order, then
    those they require, then the ones every tenant has; each once.

    :raises EndpointModuleError: the first module that cannot be used.
    """
    modules: dict[str, EndpointModule] = {}

    def add(name: str, required_by: EndpointModule | None = None) -> None:
        try:
            module = load_module(name)
        except EndpointModuleError as exc:
            if required_by is None:
                raise
            raise EndpointModuleError(
                required_by.name, f"requires {name!r}, which cannot be used: {exc.reason}"
            ) from exc
        if module.key in modules:
            return
        modules[module.key] = module
        for required in module.requires:
            add(required, module)

    for name in names:
        add(name)
    for name in ALWAYS_LAST:
        modules.pop(load_module(name).key, None)
        add(name)
    return tuple(modules.values())


def module_problems(names: Iterable[str]) -> list[str]:
    """What is wrong with each named module (empty when all can be used)."""
    problems = []
    for name in names:
        if not isinstance(name, str) or not name:
            problems.append(f"BLUEPRINTS entries must be non-empty strings, not {name!r}")
            continue
        try:
            resolve_modules([name])
        except EndpointModuleError as exc:
            problems.append(str(exc))
    return problems


def ordered_blueprints(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` once each: the built-ins in their usual order first, then the others as
    given."""
    names = list(names)
    builtins = tuple(name for name in BUILTIN_NAMES if name in names)
    return builtins + tuple(dict.fromkeys(name for name in names if name not in BUILTIN_NAMES))


def canonical_blueprints(names: Iterable[str]) -> tuple[str, ...]:
    """:func:`ordered_blueprints` of ``names`` with the always-on built-ins added."""
    return ordered_blueprints([*names, *ALWAYS_ON])


@functools.cache
def installed_module_names() -> list[str]:
    """Every endpoint module this installation has: the built-ins and those installed
    packages register."""
    return [*BUILTIN_NAMES, *sorted(_entry_points())]


def _entry_points() -> Mapping[str, object]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def _import(name: str) -> ModuleType:
    """Built-in short name first, then an entry point, then an import path."""
    if name in BUILTIN_NAMES or name in INTERNAL_NAMES:
        return importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")
    point = _entry_points().get(name) if "." not in name else None
    try:
        loaded = point.load() if point is not None else importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if point is None and exc.name is not None and name.startswith(exc.name):
            raise EndpointModuleError(
                name,
                f"unknown: not a built-in ({', '.join(BUILTIN_NAMES)}), no installed package "
                f"registers it in the {ENTRY_POINT_GROUP!r} entry-point group, and it cannot "
                f"be imported ({type(exc).__name__}: {exc})",
            ) from exc
        raise EndpointModuleError(name, f"cannot be imported: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        forget_broken_models()  # what it declared before it failed must not break others
        raise EndpointModuleError(name, f"cannot be imported: {type(exc).__name__}: {exc}") from exc
    if not isinstance(loaded, ModuleType):
        raise EndpointModuleError(name, "its entry point must name a module")
    return loaded


def _describe(name: str, module: ModuleType) -> EndpointModule:
    blueprint = getattr(module, "blueprint", None)
    if not isinstance(blueprint, Blueprint):
        raise EndpointModuleError(name, "has no module-level `blueprint` (a flask.Blueprint)")
    problems = _deferred_problems(blueprint)
    settings = getattr(module, "settings", {})
    problems += settings_problems(settings)
    migrations = getattr(module, "migrations", None)
    if migrations is not None and not Path(migrations).is_dir():
        problems.append(f"`migrations` is not a folder: {migrations}")
    requires = getattr(module, "requires", ())
    if not isinstance(requires, tuple | list) or not all(isinstance(r, str) for r in requires):
        problems.append("`requires` must be a tuple of endpoint module names")
    converters = getattr(module, "converters", {})
    if not isinstance(converters, Mapping) or not all(
        isinstance(c, type) and issubclass(c, BaseConverter) for c in converters.values()
    ):
        problems.append("`converters` must map names to werkzeug BaseConverter classes")
    for hook in ("file_references", "sweep", "seed", "stats", "check_row"):
        if getattr(module, hook, None) is not None and not callable(getattr(module, hook)):
            problems.append(f"`{hook}` must be callable")
    schedules, schedule_problems = module_schedules(name, getattr(module, "schedules", None))
    problems += schedule_problems
    package = _package_of(module)
    if not problems:
        problems += _model_problems()
    if problems:
        raise EndpointModuleError(name, "; ".join(problems))
    return EndpointModule(
        name=name,
        key=module.__name__,
        package=package,
        blueprint=blueprint,
        settings=MappingProxyType(dict(settings)),
        migrations=Path(migrations) if migrations is not None else None,
        requires=tuple(requires),
        converters=MappingProxyType(dict(converters)),
        file_references=getattr(module, "file_references", None),
        sweep=getattr(module, "sweep", None),
        seed=getattr(module, "seed", None),
        stats=getattr(module, "stats", None),
        schedules=schedules,
        check_row=getattr(module, "check_row", None),
    )


def _package_of(module: ModuleType) -> str:
    """A package's own name; a plain module's package, if it is in one."""
    if hasattr(module, "__path__"):
        return module.__name__
    return module.__name__.rpartition(".")[0] or module.__name__


def _model_problems() -> list[str]:
    """Map every model now; refuse the module if a model cannot be mapped."""
    error = forget_broken_models()
    return [f"its models cannot be mapped: {error}"] if error else []


def forget_broken_models() -> str | None:
    """Map every model declared on Base, and forget those that cannot be mapped: one broken
    mapper would otherwise fail every query of every tenant, on any module. Returns the
    first error, None when all could be mapped."""

    first = None
    for _attempt in range(10):
        try:
            configure_mappers()
            return first
        except Exception as exc:
            first = first or f"{type(exc).__name__}: {exc}"
            registry = Base.registry
            broken = [m for m in registry.mappers if getattr(m, "_configure_failed", False)]
            if not broken:
                return first
            for mapper in broken:
                manager = mapper.class_manager
                registry._dispose_manager_and_mapper(manager)  # no public API for one class
                registry._managers.pop(manager, None)
                Base.metadata.remove(mapper.local_table)
    return first


def settings_problems(settings) -> list[str]:
    """What is wrong with a module's ``settings``: not a mapping, a name that is not
    UPPER_CASE, or one the platform (or Flask) uses itself."""
    if not isinstance(settings, Mapping):
        return ["`settings` must be a dict of config names to defaults"]
    problems = []
    for key in settings:
        if not isinstance(key, str) or not SETTING_NAME.fullmatch(key):
            problems.append(f"setting {key!r} must be an UPPER_CASE name")
        elif (
            hasattr(TenantConfig, key)
            or key in Flask.default_config
            or key.startswith(PLATFORM_PREFIXES)
            or key == "SECRET_KEY"
        ):
            problems.append(f"setting {key} is the platform's own: choose another name")
    return problems


# A blueprint's error handlers would answer its errors in a shape of their own, not the
# platform's one JSON error shape. (Its request hooks are fine: every app of a route kit
# gets them, see tenantry.server.factory.RouteKit.)
_REFUSED_BLUEPRINT_HOOKS = ("error_handler_spec",)
_ROUTE_RECORD = "Blueprint.add_url_rule.<locals>.<lambda>"


def _deferred_problems(blueprint: Blueprint) -> list[str]:
    """Refuse what would hand the module a tenant's app, or not be shared.

    A blueprint's deferred functions run with the app it is registered on. An endpoint
    module's blueprint is registered by the first tenant of each route kit and then shared:
    a function that kept anything of that app would serve its config, database or storage
    to every other tenant, and app-wide hooks it installs on that app would run for all of
    that tenant's routes. Routes (flask's own deferred ``add_url_rule``) and TenantApi's
    view registration are the only ones allowed. The blueprint's own request hooks
    (``before_request``, ``after_request``, ...) are fine: they are plain functions, and
    every app sharing the routes gets them.
    """
    problems = []
    for method in ("register", "make_setup_state"):
        if getattr(type(blueprint), method) is not getattr(Blueprint, method):
            problems.append(
                f"blueprint {blueprint.name!r} overrides Blueprint.{method}, which receives a "
                "tenant's app: use a plain flask.Blueprint"
            )
    for function in blueprint.deferred_functions:
        owner = getattr(function, "__self__", None)
        qualname = getattr(function, "__qualname__", repr(function))
        if (
            isinstance(owner, Api)
            and getattr(owner, "registers_shared_views", False)
            and function.__name__ == "_deferred_blueprint_init"
        ):
            continue
        if getattr(function, "__module__", "").startswith("flask.") and qualname == _ROUTE_RECORD:
            continue
        if isinstance(owner, Api):
            problems.append(
                f"blueprint {blueprint.name!r} uses flask_restful.Api, which takes over the "
                "app's error handlers: use tenantry.endpoint.TenantApi"
            )
        elif getattr(function, "__module__", "").startswith("flask."):
            problems.append(
                f"blueprint {blueprint.name!r} installs app-wide hooks or template helpers "
                f"({qualname.split('.')[1]}), which are not shared by the tenants: use "
                "method_decorators on its resources"
            )
        else:
            problems.append(
                f"blueprint {blueprint.name!r} runs {qualname} at registration, which receives "
                "a tenant's app: endpoint modules hold no tenant state (read current_tenant "
                "per request instead)"
            )
    if any(getattr(blueprint, name).values() for name in _REFUSED_BLUEPRINT_HOOKS):
        problems.append(
            f"blueprint {blueprint.name!r} has error handlers, whose answers would not be "
            "the platform's JSON error shape: raise werkzeug's HTTPExceptions "
            "(NotFound, Conflict, ...) and let tenantry answer them"
        )
    return problems
