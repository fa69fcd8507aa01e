"""What an operator does to a tenant's users, one implementation for the CLI (``tenantry
users ...``), the platform API and the console alike; and a tenant created by an operator
of the platform. The rest of the tenants' lifecycle (enable, maintenance, rotate, delete,
backup) is :mod:`tenantry.ops`; every caller uses it as is."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from flask import Flask

from tenantry.config import ALL_BLUEPRINTS, TenantConfigError
from tenantry.data.db import tenant_database
from tenantry.data.users import (
    UnknownUser,
    create_user,
    delete_user,
    find_user,
    has_active_admin,
    update_user,
    user_rows,
)
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.ops.hold import require_tenant
from tenantry.ops.lifecycle import create_tenant
from tenantry.ops.record import record_action
from tenantry.server.factory import create_app
from tenantry.support.errors import PlatformError
from tenantry.web.auth import guard_of


class TenantUnavailable(PlatformError):
    """The tenant's app cannot be built (a broken config or module)."""


@contextlib.contextmanager
def tenant_app(home: TenantHome, slug: str) -> Iterator[Flask]:
    """The tenant's app, as the server builds it.

    :raises UnknownTenant: :raises TenantUnavailable:
    """
    require_tenant(home, slug)
    try:
        app = create_app(load_config_class(home, slug), home)
    except TenantConfigError as exc:
        raise TenantUnavailable(f"tenant {slug} cannot start: {'; '.join(exc.problems)}") from exc
    except Exception as exc:
        raise TenantUnavailable(f"tenant {slug} cannot start: {type(exc).__name__}: {exc}") from exc
    try:
        yield app
    finally:
        app.extensions["tenantry.db"].dispose()


def create_as_operator(
    home: TenantHome,
    slug: str,
    name: str | None = None,
    hosts: tuple[str, ...] = (),
    blueprints: tuple[str, ...] = ALL_BLUEPRINTS,
) -> None:
    """Create a tenant as ``tenants create`` does, then say so in its audit log
    (``tenant.create``, as the acting operator: the API and the console run it inside
    :func:`~tenantry.data.audit.acting_as`).

    :raises TenantExists: :raises TenantError: refused; nothing written.
    """
    create_tenant(home, slug, name=name, hosts=hosts, blueprints=blueprints)
    record_action(home, slug, "tenant.create")


def users_of(home: TenantHome, slug: str) -> list[dict]:
    """``[{"username", "roles", "active"}]``, read without writing anything (a tenant
    without a database yet has none). :raises UnknownTenant:"""
    require_tenant(home, slug)
    database = tenant_database(home, slug, read_only=True)
    try:
        found = user_rows(database) if database.exists() else []
    finally:
        database.dispose()
    return [
        {"username": username, "roles": roles, "active": active}
        for username, roles, active in found
    ]


def add_user(home: TenantHome, slug: str, username: str, password: str, role: str) -> None:
    """:raises UnknownTenant: :raises TenantUnavailable: :raises UserError:"""
    with tenant_app(home, slug) as app:
        create_user(
            app.extensions["tenantry.db"],
            guard_of(app).hash_password,
            username,
            password,
            [role],
            audit_action="user.add",
        )


def change_user(
    home: TenantHome,
    slug: str,
    username: str,
    keep_an_admin: bool,
    read_password: Callable[[], str] | None = None,
    delete: bool = False,
    **changes,
) -> bool:
    """Apply ``changes`` (:func:`update_user`'s keywords: ``password``, ``active``,
    ``roles``), or ``delete`` the user; ``read_password`` is asked for a new password once
    the user is known to exist. ``keep_an_admin`` refuses to disable, demote or delete the
    last active admin (the API); the CLI may (a stolen account must be stoppable, and the
    CLI can always enable it again). Returns whether the tenant has no active admin now.

    :raises UnknownTenant: :raises TenantUnavailable: :raises UserError:
    """
    with tenant_app(home, slug) as app:
        database = app.extensions["tenantry.db"]
        if read_password is not None:
            if find_user(database, username) is None:
                raise UnknownUser(username)
            changes["password"] = read_password()
        if delete:
            delete_user(database, username, keep_an_admin=keep_an_admin)
        else:
            update_user(
                database,
                guard_of(app).hash_password,
                username,
                keep_an_admin=keep_an_admin,
                **changes,
            )
        return not has_active_admin(database)
