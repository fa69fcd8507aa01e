"""`make run`'s set-up: the demo tenants acme and globex, created once if absent."""

from __future__ import annotations

from tenantry.home import TenantHome
from tenantry.tenants import create_tenant

DEMO_TENANTS = {
    "acme": ("Acme Corp", "acme.localhost"),
    "globex": ("Globex Corporation", "globex.localhost"),
}


def main() -> None:
    home = TenantHome.from_environ()
    for slug, (name, host) in DEMO_TENANTS.items():
        if home.exists(slug):
            print(f"tenant {slug}: already set up")
            continue
        create_tenant(home, slug, name=name, hosts=(host,))
        print(f"tenant {slug}: created")
    print(
        "\nServing on http://127.0.0.1:8000 — try:\n"
        "  curl http://127.0.0.1:8000/healthz\n"
        "  curl http://127.0.0.1:8000/acme/\n"
        "  curl http://127.0.0.1:8000/globex/status\n"
        "  curl -H 'Host: acme.localhost' http://127.0.0.1:8000/\n"
    )


if __name__ == "__main__":
    main()
