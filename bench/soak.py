"""``make soak``: minutes of mixed traffic over 50 tenants, with tenants added on the fly.

A real gunicorn (2 sync workers) serves a home of 50 tenants, each with an admin. Client
threads pick a tenant and do one of: log in, ``/auth/me``, ``/status``, a failed login,
upload a file, list files, download one, make a one-time link and redeem it twice (200,
then 410). Every few seconds a new tenant is created while the server runs and joins the
rotation. Every answer is checked against the contract; anything else is an error. Prints
the requests, the errors (must be 0) and each worker's RSS at the start and the end; exits
1 on any error.

    python -m bench.soak [--seconds 300] [--tenants 50] [--threads 6]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.run import PASSWORD, add_admin, rss_kib
from tenantry.home.layout import TenantHome
from tenantry.ops.lifecycle import create_tenant
from tests.server import GunicornServer

HOT_ADD_EVERY = 10.0


class Soak:
    def __init__(self, url: str, slugs: list[str]):
        self.url = url
        self.slugs = list(slugs)
        self.tokens: dict[str, str] = {}
        self.requests = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}
        self.lock = threading.Lock()

    def check(self, what: str, response: httpx.Response, *expected: int) -> bool:
        with self.lock:
            self.requests += 1
            if response.status_code in expected:
                return True
            self.errors[what] += 1
            self.examples.setdefault(what, f"{response.status_code} {response.text[:200]}")
        return False

    def token(self, client: httpx.Client, slug: str) -> str | None:
        if slug not in self.tokens:
            response = client.post(
                f"/{slug}/auth/login", json={"username": "admin", "password": PASSWORD}
            )
            if not self.check("login", response, 200):
                return None
            self.tokens[slug] = response.json()["access_token"]
        return self.tokens[slug]

    def step(self, client: httpx.Client, rng: random.Random) -> None:
        slug = rng.choice(self.slugs)
        token = self.token(client, slug)
        if token is None:
            return
        auth = {"Authorization": f"Bearer {token}"}
        action = rng.randrange(7)
        if action == 0:
            self.check("status", client.get(f"/{slug}/status"), 200)
        elif action == 1:
            response = client.get(f"/{slug}/auth/me", headers=auth)
            if self.check("me", response, 200) and response.json()["tenant"] != slug:
                self.check("me-tenant", response, -1)
        elif action == 2:
            wrong = {"username": f"nobody-{secrets.token_hex(4)}", "password": "wrong-password"}
            self.check("failed login", client.post(f"/{slug}/auth/login", json=wrong), 401)
        elif action == 3:
            body = os.urandom(rng.randrange(1, 64 * 1024))
            name = f"f{rng.randrange(8)}.bin"
            response = client.put(f"/{slug}/files/{name}", content=body, headers=auth)
            self.check("upload", response, 200, 201)
        elif action == 4:
            self.check("list", client.get(f"/{slug}/files", headers=auth), 200)
        elif action == 5:
            response = client.get(f"/{slug}/files/f{rng.randrange(8)}.bin", headers=auth)
            self.check("download", response, 200, 404)
        else:
            self.link(client, slug, auth, f"f{rng.randrange(8)}.bin")

    def link(self, client: httpx.Client, slug: str, auth: dict, name: str) -> None:
        response = client.post(f"/{slug}/files/{name}/link", json={"ttl": 60}, headers=auth)
        if response.status_code == 404:  # not uploaded yet: fine
            self.check("link", response, 404)
            return
        if not self.check("link", response, 201):
            return
        addr = response.json()["addr"]
        self.check("redeem", client.get(addr), 200)
        self.check("redeem again", client.get(addr), 410)

    def hot_add(self, home: TenantHome, number: int) -> None:
        slug = f"hot{number:03d}"
        create_tenant(home, slug)
        add_admin(home, slug)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            # Within 2 s every worker must know it; then it joins the rotation.
            deadline = time.monotonic() + 2
            while client.get(f"/{slug}/status").status_code != 200:
                if time.monotonic() > deadline:
                    self.errors["hot add"] += 1
                    return
                time.sleep(0.05)
        with self.lock:
            self.slugs.append(slug)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 300)))
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument(
        "--add-every", type=float, default=HOT_ADD_EVERY, help="seconds; 0: add no tenants"
    )
    args = parser.parse_args()
    os.environ.pop("TENANTRY_DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="tenantry-soak-") as temp:
        home = TenantHome(Path(temp) / "home")
        slugs = [f"soak{number:03d}" for number in range(args.tenants)]
        for slug in slugs:
            create_tenant(home, slug)
            add_admin(home, slug)
        env = {"TENANTRY_LOG_LEVEL": "WARNING"}
        with GunicornServer(home, workers=2, env=env) as server:
            soak = Soak(server.url, slugs)
            workers = server.worker_pids()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for slug in slugs:  # every tenant loaded once before the first reading
                    client.get(f"/{slug}/status")
            rss_start = {pid: rss_kib(pid) for pid in workers}
            stop = time.monotonic() + args.seconds

            def run(seed: int) -> None:
                rng = random.Random(seed)
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    while time.monotonic() < stop:
                        try:
                            soak.step(client, rng)
                        except httpx.HTTPError as exc:
                            with soak.lock:
                                soak.errors[f"connection: {type(exc).__name__}"] += 1

            threads = [threading.Thread(target=run, args=(seed,)) for seed in range(args.threads)]
            for thread in threads:
                thread.start()
            added = 0
            rss_series = []  # the workers' RSS together, every interval
            interval = args.add_every or HOT_ADD_EVERY
            while time.monotonic() < stop - interval:
                time.sleep(interval)
                if args.add_every:
                    soak.hot_add(home, added)
                    added += 1
                rss_series.append(sum(rss_kib(pid) for pid in workers) / 1024)
            for thread in threads:
                thread.join()
            rss_end = {pid: rss_kib(pid) for pid in workers}
            alive = server.worker_pids()

    errors = sum(soak.errors.values())
    print(
        f"soak: {args.seconds:g} s, {args.threads} threads, {args.tenants} tenants "
        f"+ {added} added while serving"
    )
    print(f"  requests: {soak.requests:,} ({soak.requests / args.seconds:,.0f}/s)")
    print(f"  errors:   {errors}")
    for what, count in soak.errors.most_common():
        print(f"    {what}: {count} (e.g. {soak.examples.get(what, '-')})")
    for pid in workers:
        print(
            f"  worker {pid}: RSS {rss_start[pid] / 1024:.1f} MiB -> {rss_end[pid] / 1024:.1f} MiB"
        )
    print(
        f"  RSS of the workers together every {interval:g} s (MiB): "
        + " ".join(f"{v:.0f}" for v in rss_series)
    )
    if sorted(alive) != sorted(workers):
        print("  workers were replaced during the soak (a crash or timeout)")
        errors += 1
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
