"""The operator console and platform API with 1 000 tenants: how long each page takes.

A home of 1 000 generated tenants (SQLite, a user each), a 2-worker server with the admin
listener, an operator signed in through the console's own form. Each page is fetched 20
times after the console's background read of the tenants' figures has had time to run
(the first page after start waits for its own tenants' figures: printed apart), and the
first fetch, the median and the slowest are printed.

    python -m bench.console [--tenants 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.generate import generate_tenants, small_database_template
from tenantry.home.layout import TenantHome
from tenantry.ops.lifecycle import create_tenant
from tenantry.platform.actions import add_user
from tenantry.platform.operators import Operators
from tests.server import GunicornServer

PASSWORD = "correct-horse-1"  # noqa: S105 - a throwaway home
RUNS = 20
# Seconds for each worker's background read of every tenant's figures (about 4 ms each).
WARM_UP = 12


def sign_in(client: httpx.Client) -> None:
    client.get("/login")
    answer = client.post(
        "/login",
        data={"csrf": client.cookies["tenantry_csrf"], "name": "ops", "password": PASSWORD},
    )
    assert answer.status_code == 302, answer.text


def timed(client: httpx.Client, path: str, headers=None) -> tuple[float, list[float]]:
    def once() -> float:
        started = time.perf_counter()
        answer = client.get(path, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        return elapsed

    cold = once()
    return cold, [once() for _ in range(RUNS)]


def run(count: int) -> list[tuple[str, float, float, float]]:
    with tempfile.TemporaryDirectory(prefix="tenantry-console-") as temp:
        home = TenantHome(Path(temp) / "home")
        (home.root / "config").mkdir(parents=True)
        create_tenant(home, "model")
        add_user(home, "model", "admin", PASSWORD, "admin")
        template = small_database_template(home, "model", Path(temp) / "template.db")
        generate_tenants(home, count - 1, database_template=template)
        Operators(home).add("ops", PASSWORD)
        rows = []
        with (
            GunicornServer(home, workers=2, admin=True) as server,
            httpx.Client(base_url=server.admin_url, timeout=60) as client,
        ):
            sign_in(client)
            started = time.perf_counter()
            cold = client.get("/tenants?page=10")  # the first page: the figures start coming
            print(f"first page after start: {(time.perf_counter() - started) * 1000:.0f} ms")
            assert cold.status_code == 200
            time.sleep(WARM_UP)
            token = client.post("/api/login", json={"name": "ops", "password": PASSWORD})
            bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
            pages = [
                ("console: tenants, page 1", "/tenants", None),
                ("console: tenants, page 20", "/tenants?page=20", None),
                ("console: search (one match)", "/tenants?q=t00777", None),
                ("console: search (111 matches)", "/tenants?q=t001", None),
                ("console: a tenant's page", "/tenants/t00500", None),
                ("API: GET /api/tenants (100)", "/api/tenants", bearer),
                ("API: GET /api/tenants?limit=1000", "/api/tenants?limit=1000", bearer),
            ]
            for name, path, headers in pages:
                cold, warm = timed(client, path, headers)
                rows.append((name, cold, statistics.median(warm), max(warm)))
                print(
                    f"{name}: cold {cold:.1f} ms, median {rows[-1][2]:.1f}, max {rows[-1][3]:.1f}"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args()
    rows = run(args.tenants)
    print(f"\n| page ({args.tenants} tenants) | first fetch | median of {RUNS} | slowest |")
    print("|---|---|---|---|")
    for name, cold, median, slowest in rows:
        print(f"| {name} | {cold:.1f} ms | {median:.1f} ms | {slowest:.1f} ms |")


if __name__ == "__main__":
    main()
