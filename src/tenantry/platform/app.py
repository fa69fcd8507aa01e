"""The admin address's app: the platform API under ``/api/`` and the console at ``/``.

It is served only on the address ``tenantry serve --admin-bind`` names: the gunicorn that
serves the tenants listens there too, and runs ``tenantry.platform.app:application``:
:class:`~tenantry.platform.address.AddressSplit`, the outermost layer, sends each request
by the listening socket it came in on (never by a header a client could send), so no
request to the tenants' address ever reaches this app, and none to this address reaches a
tenant.
"""

from __future__ import annotations

import os

from flask import Flask, Response

from tenantry.home.layout import TenantHome
from tenantry.platform.address import AddressSplit
from tenantry.platform.api import api
from tenantry.platform.console import console
from tenantry.platform.openapi import openapi
from tenantry.platform.operators import Operators
from tenantry.platform.overview import Overview
from tenantry.server.bodies import IdleInput
from tenantry.server.settings import ADMIN_BIND_ENV_VAR
from tenantry.web.errors import register_error_handlers
from tenantry.wsgi import behind_proxies, dispatcher_application

# A JSON body of the platform API is small (a tenant to create, a user to add).
MAX_JSON_BODY = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_admin_app(home: TenantHome) -> Flask:
    app = Flask(__name__)
    app.config["MAX_JSON_BODY"] = MAX_JSON_BODY
    app.config["MAX_CONTENT_LENGTH"] = MAX_JSON_BODY
    app.extensions["tenantry.home"] = home
    app.extensions["tenantry.operators"] = Operators(home)
    app.extensions["tenantry.overview"] = overview = Overview(home)
    overview.start()
    app.url_map.strict_slashes = False
    register_error_handlers(app)
    app.register_blueprint(api)
    app.register_blueprint(openapi)
    app.register_blueprint(console)

    served = app.wsgi_app

    def idle_bodies_end(environ, start_response):
        # As on the tenants' address: a body that stops arriving is given up (408), so
        # idle connections here cannot hold the workers both addresses share.
        if environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING"):
            environ["wsgi.input"] = IdleInput(environ["wsgi.input"])
        return served(environ, start_response)

    app.wsgi_app = idle_bodies_end

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app


def admin_application(home: TenantHome | None = None):
    """Every tenant of ``home`` (default: from the environment) on the tenants' address, and
    the admin app on the address TENANTRY_ADMIN_BIND names.

    :raises RuntimeError: TENANTRY_ADMIN_BIND is not set.
    """
    bind = os.environ.get(ADMIN_BIND_ENV_VAR)
    if not bind:
        raise RuntimeError(f"{ADMIN_BIND_ENV_VAR} names no address to serve the console on")
    home = home or TenantHome.from_environ()
    tenants = dispatcher_application(home)
    return AddressSplit(tenants, behind_proxies(create_admin_app(home)), bind)


def __getattr__(name: str):
    # Built on first access (gunicorn's ``tenantry.platform.app:application``).
    if name == "application":
        app = admin_application()
        globals()["application"] = app
        return app
    raise AttributeError(name)
