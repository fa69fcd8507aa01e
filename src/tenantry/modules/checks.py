"""Whether a tenant's modules can be served together: routes one module's routes would
answer for another, operations that do not declare their OpenAPI, migrations that are not
one line of revisions. Asked once per set of modules (a route kit), not per tenant."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from tenantry.data.db import module_head
from tenantry.modules.loader import EndpointModule
from tenantry.web.openapi import RULE_VARIABLE, build_paths, document_schemas, undeclared_routes


@dataclass(frozen=True)
class RouteCheck:
    """What :func:`check_routes` found: ``problems`` keep the modules from being served
    together; ``undeclared`` names the operations no resource declares in its ``openapi``
    (served all the same, and a problem only where a tenant sets ``OPENAPI_STRICT``)."""

    problems: tuple[str, ...] = ()
    undeclared: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


_route_checks: dict[tuple[str, ...], RouteCheck] = {}


def check_routes(modules: tuple[EndpointModule, ...]) -> RouteCheck:
    """These modules side by side, registered on a throwaway app (``tenants check`` and
    ``create``; once per set of modules and process): blueprints that cannot be registered
    together, routes of one that another's routes would answer, migrations that are not one
    line of revisions, and the routes without an OpenAPI declaration. Built-ins alone are
    known good."""
    if all(module.is_builtin for module in modules):
        return RouteCheck()
    key = tuple(module.key for module in modules)
    if key in _route_checks:
        return _route_checks[key]
    app = Flask("tenantry-route-check", static_folder=None)
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    for module in modules:
        app.url_map.converters.update(module.converters)
    problems = []
    for module in modules:
        try:
            app.register_blueprint(module.blueprint)
        except Exception as exc:
            problems.append(
                f"endpoint module {module.name!r} cannot be registered beside "
                f"the others: {type(exc).__name__}: {exc}"
            )
    undeclared: list[str] = []
    warnings: list[str] = []
    if not problems:
        problems = route_problems(modules, app)
        undeclared = undeclared_routes(app)
        warnings = [
            f"{problem} in the modules' models: /openapi.json shows one of them"
            for problem in document_schemas(build_paths(app))[1]
        ]
    check = _route_checks[key] = RouteCheck(tuple(problems), tuple(undeclared), tuple(warnings))
    return check


def undeclared_notes(undeclared: Iterable[str], strict: bool) -> list[str]:
    """A line for each undeclared operation: a problem's (``strict``) or a warning's."""
    advice = STRICT_ADVICE if strict else UNDECLARED_ADVICE
    return [f"{operation} is not declared: {advice}" for operation in undeclared]


def route_problems(modules: tuple[EndpointModule, ...], app: Flask) -> list[str]:
    """What keeps these modules, registered on ``app``, from being served together: routes
    of one that another's routes would answer, migrations that are not one line of
    revisions. The factory asks it of the first app of each route kit."""
    if all(module.is_builtin for module in modules):
        return []

    problems = _collisions(app, modules)
    for module in modules:
        if module.migrations is not None:
            try:
                module_head(module.migrations)
            except Exception as exc:
                problems.append(f"endpoint module {module.name!r}: its migrations: {exc}")
    return problems


UNDECLARED_ADVICE = (
    "served and listed in /openapi.json with its path and methods only; declare it in its "
    "resource's (or plain view function's) `openapi` to document its body and answers"
)
STRICT_ADVICE = (
    "OPENAPI_STRICT is set: every method of a route needs an entry in its resource's (or "
    "plain view function's) `openapi`"
)


def _collisions(app: Flask, modules: tuple[EndpointModule, ...]) -> list[str]:
    """Routes of one module that a route of another would answer too (the same path, or a
    path another's variable part matches, with a method in common)."""
    owners = {module.blueprint.name: module.name for module in modules}
    rules = [rule for rule in app.url_map.iter_rules() if "." in rule.endpoint]
    by_blueprint: dict[str, list] = {}
    for rule in rules:
        by_blueprint.setdefault(rule.endpoint.partition(".")[0], []).append(rule)
    problems = []
    for blueprint, own in by_blueprint.items():
        others = Map(
            [rule.empty() for rule in rules if rule.endpoint.partition(".")[0] != blueprint],
            converters=dict(app.url_map.converters),
            strict_slashes=False,
            merge_slashes=False,
        ).bind("localhost")
        for rule in own:
            for method in sorted((rule.methods or set()) - {"OPTIONS", "HEAD"}):
                try:
                    other, _ = others.match(sample_path(rule), method=method, return_rule=True)
                except HTTPException:
                    continue
                owner = owners.get(other.endpoint.partition(".")[0], "?")
                problems.append(
                    f"route {method} {rule.rule} of endpoint module {owners.get(blueprint, '?')!r}"
                    f" collides with {other.rule} of {owner!r}"
                )
    return problems


# Sample values for the URL converters of a route, to reach it at all.
SAMPLE_VALUES = {"int": "1", "float": "1.0", "uuid": "00000000-0000-0000-0000-000000000000"}
SAMPLE_DEFAULT = "probe"


def sample_path(rule) -> str:
    """The rule's path with a sample value for each variable part."""

    def sample(match: re.Match) -> str:
        return SAMPLE_VALUES.get(match.group(1) or "default", SAMPLE_DEFAULT)

    return RULE_VARIABLE.sub(sample, rule.rule)
