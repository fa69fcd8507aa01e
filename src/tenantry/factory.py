"""The application factory: one Flask app per tenant, built from its config class."""

from __future__ import annotations

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface

from tenantry.api import no_content
from tenantry.auth import init_guard
from tenantry.config import TenantConfig, tenant_settings
from tenantry.db import TenantDatabase
from tenantry.endpoints import create_blueprint, endpoint_modules
from tenantry.errors import register_error_handlers
from tenantry.home import TenantHome
from tenantry.storage import TenantStorage


def create_app(config_class: type[TenantConfig], home: TenantHome) -> Flask:
    """Build the app of the tenant that ``config_class`` describes.

    :raises TenantConfigError: the config class or the tenant's secrets are invalid.
    :raises SQLAlchemyError: the tenant's database cannot be opened or migrated.
    """
    slug = config_class.SLUG
    settings = tenant_settings(config_class, home.read_secrets(slug), home.instance_dir(slug))
    app = TenantFlask("tenantry", instance_path=settings["INSTANCE_PATH"], static_folder=None)
    app.config.from_mapping(settings)
    configure_routing(app)
    register_extensions(app, home)
    register_error_handlers(app)
    register_blueprints(app)
    return app


class TenantFlask(Flask):
    """Flask, with answers that read the same in every worker process."""

    def make_default_options_response(self) -> Response:
        # Flask builds Allow from a set, whose order differs between processes.
        allowed = super().make_default_options_response().allow
        response = no_content()
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response


class TenantSessionInterface(SecureCookieSessionInterface):
    """Scopes any session cookie to the tenant's own root, wherever it is mounted."""

    def get_cookie_path(self, app: Flask) -> str:
        return (request.script_root or "") + "/"


def configure_routing(app: Flask) -> None:
    """Answer paths as given: no redirects to merge slashes or add a trailing one."""
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.json.sort_keys = False
    app.session_interface = TenantSessionInterface()


def register_extensions(app: Flask, home: TenantHome) -> None:
    """Attach the tenant's database, storage and token guard; migrate the database if it
    is behind."""
    slug = app.config["SLUG"]
    storage = TenantStorage(app.config["STORAGE_ROOT"])
    storage.ensure()
    storage.sweep_incoming()
    database = TenantDatabase(slug, home.instance_dir(slug), home.database_url)
    database.ensure_current()
    app.extensions["tenantry.storage"] = storage
    app.extensions["tenantry.db"] = database
    init_guard(app)


def register_blueprints(app: Flask) -> None:
    """Register each enabled endpoint module; the others have no routes at all."""
    for name in endpoint_modules(app.config["BLUEPRINTS"]):
        app.register_blueprint(create_blueprint(name, app))
