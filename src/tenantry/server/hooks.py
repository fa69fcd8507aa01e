"""gunicorn server hooks of ``tenantry serve`` (``--config python:tenantry.server.hooks``).

- The jobs: unless ``--no-jobs``, the master starts one ``tenantry worker`` beside its
  workers when it is ready, starts it again if it dies, and stops it (SIGTERM: its running
  jobs finish) when the server stops.
- The metrics (``--metrics-bind``): the master serves the workers' summed metrics on the
  metrics address, marks a worker's live gauges dead when it exits, and removes the metrics
  folder when the server stops (each start makes a fresh one: nothing piles up).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tenantry.server.metrics import BIND_ENV_VAR as METRICS_BIND_ENV_VAR
from tenantry.server.metrics import MULTIPROC_ENV_VAR, exposition

HOOKS_CONFIG = "python:tenantry.server.hooks"
# Set by `tenantry serve` (to the jobs' concurrency) unless --no-jobs.
SERVE_JOBS_ENV_VAR = "TENANTRY_SERVE_JOBS"
# How long a stopping server lets the job runner's running jobs finish; past it they are
# killed, and their leases hand them to the next runner (none is lost).
JOBS_STOP_SECONDS = 30
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_TIMEOUT = 10

log = logging.getLogger("tenantry.metrics")


def _folder() -> Path | None:
    folder = os.environ.get(MULTIPROC_ENV_VAR)
    return Path(folder) if folder else None


def metrics_app(environ, start_response):
    """``GET /metrics``: the Prometheus text; anything else 404 (405 for other methods)."""
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: the metrics are at /metrics\n"]
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
        return [b""]
    body = exposition(_folder())
    start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    timeout = SCRAPE_TIMEOUT  # an idle or slow client lets go of its thread

    def log_message(self, *args) -> None:  # a scrape every few seconds is not news
        pass


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape: a client that connects and idles holds up no other."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def metrics_server(bind: str) -> WSGIServer:
    """The metrics address's server, bound. :raises ValueError: :raises OSError:"""
    host, port = parse_bind(bind)
    server_class = _Server6 if ":" in host else _Server
    return make_server(host, port, metrics_app, server_class, _QuietHandler)


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port). :raises ValueError:"""
    host, colon, port = bind.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics-bind must be HOST:PORT (got {bind!r})")
    return host.strip("[]"), int(port)


class JobRunnerProcess:
    """The master's ``tenantry worker``: started when the server is ready, started again
    (after a second) if it ends while the server runs, stopped with the server."""

    def __init__(self, concurrency: str, log):
        self.argv = [sys.executable, "-m", "tenantry.cli", "worker", "--concurrency", concurrency]
        self.log = log
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)
        threading.Thread(target=self._watch, name="tenantry-jobs", daemon=True).start()
        self.log.info("Running jobs (tenantry worker, pid %s)", self.process.pid)

    def _watch(self) -> None:
        while not self.stopping.is_set():
            code = self.process.wait()
            if self.stopping.is_set():
                return
            self.log.error("The job runner ended (exit %s); starting it again", code)
            if self.stopping.wait(1.0):
                return
            self.process = subprocess.Popen(self.argv)

    def stop(self) -> None:
        self.stopping.set()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=JOBS_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_jobs: JobRunnerProcess | None = None


def when_ready(server) -> None:
    global _jobs
    concurrency = os.environ.get(SERVE_JOBS_ENV_VAR)
    if concurrency:
        _jobs = JobRunnerProcess(concurrency, server.log)
        _jobs.start()
    bind = os.environ.get(METRICS_BIND_ENV_VAR)
    if not bind or _folder() is None:
        return
    try:
        httpd = metrics_server(bind)
    except (OSError, ValueError) as exc:  # `tenantry serve` tried it first; taken since
        server.log.error("Cannot serve metrics at %s: %s", bind, exc)
        return
    thread = threading.Thread(target=httpd.serve_forever, name="tenantry-metrics", daemon=True)
    thread.start()
    server.log.info("Serving metrics at http://%s/metrics", bind)


def child_exit(server, worker) -> None:
    folder = _folder()
    if folder is not None:
        # lazy: prometheus_client loads only under --metrics-bind
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(folder))


def on_exit(server) -> None:
    if _jobs is not None:
        _jobs.stop()
    folder = _folder()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
