"""A real gunicorn for end-to-end tests: started on a free loopback port, stopped after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tenantry.home.layout import DATABASE_URL_ENV_VAR, HOME_ENV_VAR, TenantHome
from tenantry.server.serving import gunicorn_options, metrics_setup
from tenantry.server.settings import ADMIN_BIND_ENV_VAR


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate ``process`` (if still running) and wait for it; kill it after
    ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """``with GunicornServer(home) as server: httpx.get(server.url + "/healthz")``

    It runs with the options of ``tenantry serve`` (gevent workers); ``serving="sync"``
    runs gunicorn's own defaults, as a plain ``gunicorn tenantry.wsgi:application`` does.
    The server reads its tenants from ``home`` and keeps their data where ``home`` does
    (SQLite files, or the PostgreSQL database of ``home.database_url``).
    """

    def __init__(
        self,
        home: TenantHome,
        app: str = "tenantry.wsgi:application",
        workers: int = 2,
        chdir: Path | None = None,
        env: dict[str, str] | None = None,
        ready_path: str = "/healthz",
        serving: str = "serve",
        metrics_bind: str | None = None,
        admin: bool = False,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home.root / f"gunicorn-{self.port}.log"
        self.ready_path = ready_path
        self.argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            # As `tenantry serve` runs it (a later --timeout wins)
            *(gunicorn_options(workers) if serving == "serve" else ["--workers", str(workers)]),
            "--timeout", "120",
            # Kept-alive idle connections count as active under gevent: do not wait long.
            "--graceful-timeout", "1",
            # gunicorn's control socket has one default path: concurrent servers would share it
            "--no-control-socket",
        ]  # fmt: skip
        if chdir is not None:
            self.argv += ["--chdir", str(chdir)]
        metrics_env = {}
        if metrics_bind is not None:  # as `tenantry serve --metrics-bind` sets it up
            options, metrics_env = metrics_setup(metrics_bind)
            self.argv += options
        admin_env = {}
        if admin:  # as `tenantry serve --admin-bind` sets it up: a second listener
            self.admin_port = free_port()
            self.admin_url = f"http://127.0.0.1:{self.admin_port}"
            self.argv += ["--bind", f"127.0.0.1:{self.admin_port}"]
            admin_env = {ADMIN_BIND_ENV_VAR: f"127.0.0.1:{self.admin_port}"}
            if app == "tenantry.wsgi:application":
                app = "tenantry.platform.app:application"
        self.argv.append(app)
        self.env = {
            **os.environ,
            HOME_ENV_VAR: str(home.root),
            **metrics_env,
            **admin_env,
            **(env or {}),
        }
        if not admin:
            self.env.pop(ADMIN_BIND_ENV_VAR, None)
        self.env.pop(DATABASE_URL_ENV_VAR, None)
        if home.database_url:
            self.env[DATABASE_URL_ENV_VAR] = home.database_url
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> GunicornServer:
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            try:
                httpx.get(self.url + self.ready_path, timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"gunicorn did not come up:\n{self.log()}")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            stop(self.process)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes (children of the gunicorn master)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


def poll_until(predicate, timeout: float = 5.0, interval: float = 0.05):
    """Call ``predicate`` until it returns a truthy value; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def raw_request(
    port: int, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Send a request exactly as given (no client-side checks or normalisation);
    returns the status and the body."""
    import socket

    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
