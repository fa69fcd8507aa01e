"""``make chaos``: faults under steady traffic, against a real 2-worker gunicorn serving
three tenants on PostgreSQL (rate limits and jobs on Redis, files on local disk).

Each scenario runs a few seconds of writes (PUTs of distinct small files, three writers per
tenant) and reads, injects one fault, ends it, and goes on for a few seconds. It prints the
requests answered and the errors during and after the fault (500s apart: a fault should be
a 503, never a 500), the time from the fault's end until every tenant answers again, and
whether any write answered 201 is missing afterwards (every 201 is checked against the
tenant's file list).

    python -m bench.chaos [--scenarios kill-9,sigterm,redis,postgresql]

Loopback and this machine's own PostgreSQL and Redis only: it restarts both (run it where
nothing else uses them). Not covered: a full disk under one tenant and a stopped object
store (see the note in the README).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg

from tenantry.data.db import schema_name
from tenantry.data.users import create_user
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.ops.lifecycle import create_tenant
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer

PG_URL = os.environ.get(
    "TENANTRY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "chaos-password-1"  # noqa: S105 - a throwaway home
TENANTS = ("ca", "cb", "cc")
BEFORE, AFTER = 2.0, 5.0


class Traffic:
    """Writers and readers on every tenant until stopped; every answer recorded."""

    def __init__(self, url: str, tokens: dict[str, str]):
        self.url, self.tokens = url, tokens
        self.stop = threading.Event()
        self.answers: list[tuple[float, str, str, int | str]] = []  # (time, tenant, kind, status)
        self.acknowledged: dict[str, set[str]] = {slug: set() for slug in tokens}
        self.threads = [
            threading.Thread(target=self._write, args=(slug, n), daemon=True)
            for slug in tokens
            for n in range(3)
        ] + [threading.Thread(target=self._read, args=(slug,), daemon=True) for slug in tokens]

    def start(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _record(self, slug: str, kind: str, status) -> None:
        self.answers.append((time.monotonic(), slug, kind, status))

    def _write(self, slug: str, writer: int) -> None:
        auth = {"Authorization": f"Bearer {self.tokens[slug]}"}
        n = 0
        while not self.stop.is_set():
            name = f"w{writer}-{n}.txt"
            n += 1
            try:
                response = httpx.put(
                    f"{self.url}/{slug}/files/{name}",
                    content=name.encode(),
                    headers=auth,
                    timeout=30,
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if status == 201:
                self.acknowledged[slug].add(name)
            self._record(slug, "write", status)
            self.stop.wait(0.02)

    def _read(self, slug: str) -> None:
        auth = {"Authorization": f"Bearer {self.tokens[slug]}"}
        while not self.stop.is_set():
            try:
                status = httpx.get(f"{self.url}/{slug}/files", headers=auth, timeout=30).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self._record(slug, "read", status)
            self.stop.wait(0.05)


def summary(name: str, traffic: Traffic, fault: tuple[float, float], stored) -> dict:
    start, end = fault
    during = [a for a in traffic.answers if start <= a[0] <= end]
    after = [a for a in traffic.answers if a[0] > end]

    def errors(answers) -> Counter:
        return Counter(str(status) for _, _, _, status in answers if status not in (200, 201))

    recovered = []
    for slug in TENANTS:
        ok = [at for at, tenant, _, status in after if tenant == slug and status in (200, 201)]
        recovered.append(ok[0] - end if ok else float("inf"))
    missing = sum(len(traffic.acknowledged[slug] - stored(slug)) for slug in TENANTS)
    return {
        "scenario": name,
        "during": f"{len(during)} answered, errors {dict(errors(during))}",
        "after": f"{len(after)} answered, errors {dict(errors(after))}",
        "500s": sum(1 for _, _, _, status in traffic.answers if status == 500),
        "recovered in s": round(max(recovered), 2),
        "acknowledged writes missing": missing,
    }


def stored_names(url: str, tokens: dict[str, str]):
    def names(slug: str) -> set[str]:
        auth = {"Authorization": f"Bearer {tokens[slug]}"}
        listed = httpx.get(f"{url}/{slug}/files", headers=auth, timeout=30).json()
        return {item["name"] for item in listed["files"]}

    return names


def restart_redis() -> None:
    subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True, check=False)


def start_redis() -> None:
    subprocess.run(
        ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--daemonize", "yes",
         "--save", ""],
        capture_output=True, check=True,
    )  # fmt: skip


def drop_schemas() -> None:
    """The tenants' schemas of this (or an earlier, interrupted) run."""
    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql")) as connection:
        for slug in TENANTS:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema_name(slug)}" CASCADE')


def run(scenarios: list[str]) -> list[dict]:
    drop_schemas()
    try:
        return _run(scenarios)
    finally:
        drop_schemas()


def _run(scenarios: list[str]) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="tenantry-chaos-") as temp:
        home = TenantHome(Path(temp) / "home", PG_URL)
        (home.root / "config").mkdir(parents=True)
        tokens = {}
        for slug in TENANTS:
            create_tenant(home, slug)
            config = home.config_file(slug)  # a rate limit: counted in Redis
            config.write_text(config.read_text() + '    RATE_LIMIT = "100000/minute"\n')
            app = create_app(load_config_class(home, slug), home)
            create_user(app.extensions["tenantry.db"], guard_of(app).hash_password, "admin",
                        PASSWORD, ["admin"])  # fmt: skip
            app.extensions["tenantry.db"].dispose()
        env = {"TENANTRY_REDIS_URL": REDIS_URL, "TENANTRY_LOG_LEVEL": "WARNING"}
        server = GunicornServer(home, workers=2, env=env).__enter__()
        try:
            for slug in TENANTS:
                tokens[slug] = httpx.post(
                    f"{server.url}/{slug}/auth/login",
                    json={"username": "admin", "password": PASSWORD},
                ).json()["access_token"]
            for scenario in scenarios:
                traffic = Traffic(server.url, tokens).start()
                time.sleep(BEFORE)
                start = time.monotonic()
                if scenario == "kill-9":
                    os.kill(server.worker_pids()[0], signal.SIGKILL)
                elif scenario == "redis":
                    restart_redis()
                    time.sleep(3)
                    start_redis()
                elif scenario == "postgresql":
                    subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True)
                elif scenario == "sigterm":
                    # Graceful: requests in flight finish; then the server is started again
                    # (its new port is told to the traffic, as a load balancer would).
                    server.process.send_signal(signal.SIGTERM)
                    server.process.wait(60)
                    server = GunicornServer(home, workers=2, env=env).__enter__()
                    traffic.url = server.url
                end = time.monotonic()
                time.sleep(AFTER)
                traffic.finish()
                results.append(
                    summary(scenario, traffic, (start, end), stored_names(server.url, tokens))
                )
                print(results[-1], flush=True)
        finally:
            server.__exit__(None, None, None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="kill-9,sigterm,redis,postgresql")
    args = parser.parse_args()
    results = run(args.scenarios.split(","))
    columns = ("scenario", "during the fault", "after it", "500s", "recovered in")
    print("| " + " | ".join((*columns, "acknowledged writes missing")) + " |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['scenario']} | {r['during']} | {r['after']} | {r['500s']} | "
            f"{r['recovered in s']} s | {r['acknowledged writes missing']} |"
        )


if __name__ == "__main__":
    main()
