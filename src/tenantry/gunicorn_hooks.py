"""gunicorn server hooks of ``tenantry serve --metrics-bind`` (``--config
python:tenantry.gunicorn_hooks``): the master serves the workers' summed metrics on the
metrics address, marks a worker's live gauges dead when it exits, and removes the metrics
folder when the server stops (each start makes a fresh one: nothing piles up)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tenantry.metrics import MULTIPROC_ENV_VAR, exposition

METRICS_BIND_ENV_VAR = "TENANTRY_METRICS_BIND"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger("tenantry.metrics")


def _folder() -> Path | None:
    folder = os.environ.get(MULTIPROC_ENV_VAR)
    return Path(folder) if folder else None


def metrics_app(environ, start_response):
    """``GET /metrics``: the Prometheus text; anything else 404."""
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: the metrics are at /metrics\n"]
    body = exposition(_folder())
    start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # a scrape every few seconds is not news
        pass


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port). :raises ValueError:"""
    host, colon, port = bind.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics-bind must be HOST:PORT (got {bind!r})")
    return host.strip("[]"), int(port)


def when_ready(server) -> None:
    bind = os.environ.get(METRICS_BIND_ENV_VAR)
    if not bind or _folder() is None:
        return
    host, port = parse_bind(bind)
    httpd: WSGIServer = make_server(host, port, metrics_app, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="tenantry-metrics", daemon=True)
    thread.start()
    server.log.info("Serving metrics at http://%s/metrics", bind)


def child_exit(server, worker) -> None:
    folder = _folder()
    if folder is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(folder))


def on_exit(server) -> None:
    folder = _folder()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
