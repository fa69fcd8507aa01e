"""`make run`'s set-up: the demo tenants acme and globex with an admin each, made once."""

from __future__ import annotations

import secrets
import sys

from tenantry.data.users import create_user, find_user
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.ops.lifecycle import create_tenant
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of

DEMO_TENANTS = {
    "acme": ("Acme Corp", "acme.localhost"),
    "globex": ("Globex Corporation", "globex.localhost"),
}
DEMO_ADMIN = "admin"


def ensure_demo_admin(home: TenantHome, slug: str) -> str | None:
    """Create the demo admin if the tenant has none; returns its password, shown once."""
    app = create_app(load_config_class(home, slug), home)
    database = app.extensions["tenantry.db"]
    try:
        if find_user(database, DEMO_ADMIN) is not None:
            return None
        password = secrets.token_urlsafe(12)
        create_user(database, guard_of(app).hash_password, DEMO_ADMIN, password, ["admin"])
        return password
    finally:
        database.dispose()


def main(bind: str) -> None:
    home = TenantHome.from_environ()
    passwords = {}
    for slug, (name, host) in DEMO_TENANTS.items():
        if not home.exists(slug):
            create_tenant(home, slug, name=name, hosts=(host,))
            print(f"tenant {slug}: created")
        passwords[slug] = ensure_demo_admin(home, slug)
        if passwords[slug]:
            print(
                f"tenant {slug}: admin user '{DEMO_ADMIN}', "
                f"password '{passwords[slug]}' (shown once)"
            )
        else:
            print(
                f"tenant {slug}: ready; its admin '{DEMO_ADMIN}' was made on an earlier run "
                f"(a new password: .venv/bin/tenantry users passwd {slug} {DEMO_ADMIN})"
            )
    password = passwords["acme"] or "<its password>"
    url = f"http://{bind}"
    print(
        f"\nServing on {url} — try:\n"
        f"  curl {url}/healthz\n"
        f"  curl {url}/acme/\n"
        f"  curl {url}/globex/status\n"
        f"  curl -H 'Host: acme.localhost' {url}/\n"
        f"  curl -X POST {url}/acme/auth/login \\\n"
        f"""       -d '{{"username": "admin", "password": "{password}"}}'\n"""
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8000")
