"""``make chaos``: faults under steady traffic, against a real 2-worker gunicorn serving
three tenants on PostgreSQL (rate limits and jobs on Redis).

Each scenario runs a few seconds of writes (PUTs of distinct small files, three writers per
tenant) and reads, injects one fault, ends it, and goes on for a few seconds. It prints the
requests answered and the errors during and after the fault (500s apart: a fault should be
a 503 or 507, never a 500), the time from the fault's end until every tenant's writes
succeed again, and how many writes answered 201 are missing afterwards (every one is
listed and read back).

    python -m bench.chaos [--scenarios kill-9,sigterm,redis,postgresql,disk-full,object-store]

- kill-9: one worker killed; sigterm: the server stopped gracefully and started again;
- redis, postgresql: the machine's own servers stopped and started (run it where nothing
  else uses them);
- disk-full: one tenant's folder is a 64 MiB tmpfs of its own (so: root), filled to the
  last byte for 3 s;
- object-store: a second home with files in a bucket on moto's server, reached through a
  proxy that refuses connections for 3 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
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
from tenantry.storage.location import STORAGE_URL_ENV_VAR
from tenantry.storage.s3 import S3_ENDPOINT_ENV_VAR, ObjectStore
from tenantry.web.auth import guard_of
from tests.s3 import CREDENTIALS, MotoServer
from tests.server import GunicornServer, free_port

PG_URL = os.environ.get(
    "TENANTRY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "chaos-password-1"  # noqa: S105 - a throwaway home
TENANTS = ("ca", "cb", "cc")
BEFORE, AFTER = 2.0, 5.0


class Traffic:
    """Writers and readers on every tenant until stopped; every answer recorded."""

    def __init__(self, url: str, tokens: dict[str, str], scenario: str = ""):
        self.url, self.tokens, self.scenario = url, tokens, scenario
        self.stop = threading.Event()
        self.answers: list[tuple[float, str, str, int | str]] = []  # (time, tenant, kind, status)
        self.acknowledged: dict[str, set[str]] = {slug: set() for slug in tokens}
        self.slow: list = []
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

    def _record(self, slug: str, kind: str, status, began: float) -> None:
        now = time.monotonic()
        self.answers.append((now, slug, kind, status))
        if now - began > 1:
            self.slow.append((began, now, slug, kind, status))

    def _write(self, slug: str, writer: int) -> None:
        auth = {"Authorization": f"Bearer {self.tokens[slug]}"}
        n = 0
        while not self.stop.is_set():
            name = f"{self.scenario}-w{writer}-{n}.txt"  # new files only: each a 201
            n += 1
            began = time.monotonic()
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
            self._record(slug, "write", status, began)
            self.stop.wait(0.02)

    def _read(self, slug: str) -> None:
        auth = {"Authorization": f"Bearer {self.tokens[slug]}"}
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                status = httpx.get(f"{self.url}/{slug}/files", headers=auth, timeout=30).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self._record(slug, "read", status, began)
            self.stop.wait(0.05)


def summary(name: str, traffic: Traffic, fault: tuple[float, float], missing: int) -> dict:
    start, end = fault
    during = [a for a in traffic.answers if start <= a[0] <= end]
    after = [a for a in traffic.answers if a[0] > end]

    def errors(answers) -> Counter:
        return Counter(str(status) for _, _, _, status in answers if status not in (200, 201))

    recovered = []
    for slug in TENANTS:
        ok = [at for at, tenant, _, status in after if tenant == slug and status == 201]
        recovered.append(ok[0] - end if ok else float("inf"))
    print(name, "per tenant", [round(r, 2) for r in recovered], flush=True)
    for began, ended, slug, kind, status in traffic.slow:
        print(
            f"  slow {kind} {slug} {status}: {began - end:+.2f} .. {ended - end:+.2f} s", flush=True
        )
    return {
        "scenario": name,
        "during": f"{len(during)} answered, errors {dict(errors(during))}",
        "after": f"{len(after)} answered, errors {dict(errors(after))}",
        "500s": sum(1 for _, _, _, status in traffic.answers if status == 500),
        "recovered in s": round(max(recovered), 2),
        "acknowledged writes missing": missing,
    }


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


SCENARIOS = ("kill-9", "sigterm", "redis", "postgresql", "disk-full", "object-store")
# The tenant whose folder is a small filesystem of its own (disk-full fills it).
FULL_TENANT = "cc"


def run(scenarios: list[str]) -> list[dict]:
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    drop_schemas()
    results = []
    try:
        local = [name for name in scenarios if name != "object-store"]
        if local:
            with Deployment(small_disk="disk-full" in local) as deployment:
                results += [deployment.scenario(name) for name in local]
        if "object-store" in scenarios:
            drop_schemas()
            with (
                MotoServer() as moto,
                Proxy(moto.url) as proxy,
                Deployment(object_store=proxy) as deployment,
            ):
                results.append(deployment.scenario("object-store"))
    finally:
        drop_schemas()
    return results


class Deployment:
    """A home of three tenants on PostgreSQL, served by a 2-worker gunicorn: files on local
    disk (one tenant's folder on a small filesystem of its own when ``small_disk``), or in
    a bucket behind ``object_store``, a proxy an operator can stop."""

    def __init__(self, small_disk: bool = False, object_store: Proxy | None = None):
        self.small_disk, self.proxy = small_disk, object_store
        self.env = {"TENANTRY_REDIS_URL": REDIS_URL, "TENANTRY_LOG_LEVEL": "WARNING"}
        self.temp = tempfile.TemporaryDirectory(prefix="tenantry-chaos-")
        self.mounted: Path | None = None
        self.saved_environ = dict(os.environ)

    def __enter__(self) -> Deployment:
        if self.proxy is not None:
            bucket = f"chaos-{os.getpid()}"
            os.environ.update(CREDENTIALS)
            ObjectStore(bucket, endpoint_url=self.proxy.url).client.create_bucket(Bucket=bucket)
            self.env |= {
                **CREDENTIALS,
                STORAGE_URL_ENV_VAR: f"s3://{bucket}/chaos",
                S3_ENDPOINT_ENV_VAR: self.proxy.url,
            }
            os.environ.update(self.env)  # for the tenants made here, as for the server
        self.home = home = TenantHome(Path(self.temp.name) / "home", PG_URL)
        (home.root / "config").mkdir(parents=True)
        for slug in TENANTS:
            create_tenant(home, slug)
            config = home.config_file(slug)  # a rate limit: counted in Redis
            config.write_text(config.read_text() + '    RATE_LIMIT = "100000/minute"\n')
            app = create_app(load_config_class(home, slug), home)
            create_user(app.extensions["tenantry.db"], guard_of(app).hash_password, "admin",
                        PASSWORD, ["admin"])  # fmt: skip
            app.extensions["tenantry.db"].dispose()
        if self.small_disk:
            self.mounted = small_filesystem(home.instance_dir(FULL_TENANT))
        self.server = GunicornServer(home, workers=2, env=self.env).__enter__()
        self.tokens = {
            slug: httpx.post(
                f"{self.server.url}/{slug}/auth/login",
                json={"username": "admin", "password": PASSWORD},
            ).json()["access_token"]
            for slug in TENANTS
        }
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.server.__exit__(None, None, None)
        finally:
            if self.mounted is not None:
                subprocess.run(["umount", str(self.mounted)], check=False)
            os.environ.clear()
            os.environ.update(self.saved_environ)
            self.temp.cleanup()

    def scenario(self, name: str) -> dict:
        traffic = Traffic(self.server.url, self.tokens, name).start()
        time.sleep(BEFORE)
        start = time.monotonic()
        if name == "kill-9":
            os.kill(self.server.worker_pids()[0], signal.SIGKILL)
        elif name == "redis":
            restart_redis()
            time.sleep(3)
            start_redis()
        elif name == "postgresql":
            subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True)
        elif name == "sigterm":
            # Graceful: requests in flight finish; then the server is started again (its
            # new port is told to the traffic, as a load balancer would).
            self.server.process.send_signal(signal.SIGTERM)
            self.server.process.wait(60)
            self.server = GunicornServer(self.home, workers=2, env=self.env).__enter__()
            traffic.url = self.server.url
        elif name == "disk-full":
            filler = fill(self.home.instance_dir(FULL_TENANT))
            time.sleep(3)
            filler.unlink()
        elif name == "object-store":
            self.proxy.stop()
            time.sleep(3)
            self.proxy.start()
        end = time.monotonic()
        time.sleep(AFTER)
        traffic.finish()
        result = summary(name, traffic, (start, end), self.missing(traffic))
        print(result, flush=True)
        return result

    def missing(self, traffic: Traffic) -> int:
        """Acknowledged writes whose file is not listed or does not read back as sent."""
        lost = 0
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            for slug, names in traffic.acknowledged.items():
                auth = {"Authorization": f"Bearer {self.tokens[slug]}"}
                listed = client.get(f"/{slug}/files", headers=auth).json()
                stored = {item["name"] for item in listed["files"]}
                for name in names:
                    if name not in stored:
                        lost += 1
                        continue
                    read = client.get(f"/{slug}/files/{name}", headers=auth)
                    lost += read.status_code != 200 or read.content != name.encode()
        return lost


def small_filesystem(folder: Path) -> Path:
    """Put ``folder`` on a 64 MiB tmpfs of its own, its contents kept (needs root)."""
    if os.geteuid() != 0:
        raise SystemExit("disk-full mounts a small filesystem: run it as root, or leave it out")
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=True)
    shutil.copytree(aside, folder, dirs_exist_ok=True)
    shutil.rmtree(aside)
    return folder


def fill(folder: Path) -> Path:
    """Fill the filesystem under ``folder`` to its last byte; the filler file to remove."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * size):
                    pass
    finally:
        os.close(descriptor)
    return filler


class Proxy:
    """A TCP proxy on a fixed loopback port to ``target``: ``stop`` closes its port and
    every connection through it (the store is away: connections are refused), ``start``
    opens the same port again."""

    def __init__(self, target: str):
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def __enter__(self) -> Proxy:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        self.listener.close()
        with self.lock:
            for connection in self.open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
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
