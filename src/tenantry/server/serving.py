"""How ``tenantry serve`` runs gunicorn: the one place that chooses the server model.

Workers are gevent workers: each connection is a greenlet, so a worker serves many
requests at once, and a client that sends its request slowly (or not at all) holds a
greenlet, never a worker. gunicorn bounds the wait for each request head by the
keep-alive time: a connection without a whole head within :data:`HEAD_TIMEOUT` seconds is
closed, and so is a kept-alive connection idle that long. Measured before choosing (64 to
256 trickling connections against 2 workers, another tenant's ``GET /`` every 50 ms): sync
workers answered 0 of those requests within 5 s, gthread with 8 threads 0, gevent all of
them (p99 under 150 ms). See docs/operators.md, *Serving*.
"""

from __future__ import annotations

import tempfile

from tenantry.server.hooks import (
    HOOKS_CONFIG,
    METRICS_BIND_ENV_VAR,
    SERVE_JOBS_ENV_VAR,
    metrics_server,
)
from tenantry.server.metrics import MULTIPROC_ENV_VAR, labelled_tenants_limit

# gunicorn's gevent worker, sending downloads with os.sendfile (tenantry.server.worker)
WORKER_CLASS = "tenantry.server.worker.Worker"
# Seconds a client has to send a whole request head, and a kept-alive connection may idle.
HEAD_TIMEOUT = 10
# Connections (and so requests in progress) per worker; each is a greenlet, not a thread.
WORKER_CONNECTIONS = 1000
# Long uploads and downloads keep a request busy for minutes: do not kill the worker.
WORKER_TIMEOUT = 300


def metrics_setup(bind: str) -> tuple[list[str], dict[str, str]]:
    """gunicorn options and environment for ``--metrics-bind HOST:PORT``: the hooks of
    :mod:`tenantry.server.hooks`, and a fresh folder for the workers' figures (on the
    local disk: it is mmapped), named before any worker imports prometheus_client.

    :raises ValueError: ``bind`` is not HOST:PORT, or cannot be bound now.
    """

    labelled_tenants_limit()
    try:
        metrics_server(bind).server_close()  # taken, or not an address here: say so now
    except OSError as exc:
        raise ValueError(f"--metrics-bind {bind}: {exc.strerror or exc}") from None
    folder = tempfile.mkdtemp(prefix="tenantry-metrics-")
    options = ["--config", HOOKS_CONFIG]
    return options, {MULTIPROC_ENV_VAR: folder, METRICS_BIND_ENV_VAR: bind}


def jobs_setup(concurrency: int) -> tuple[list[str], dict[str, str]]:
    """gunicorn options and environment for the jobs ``tenantry serve`` runs itself: the
    master starts one ``tenantry worker`` beside its workers (:mod:`tenantry.server.hooks`)
    and stops it with them."""
    return ["--config", HOOKS_CONFIG], {SERVE_JOBS_ENV_VAR: str(concurrency)}


def gunicorn_options(workers: int) -> list[str]:
    """The gunicorn command-line options ``tenantry serve`` runs with."""
    return [
        "--workers", str(workers),
        "--worker-class", WORKER_CLASS,
        "--worker-connections", str(WORKER_CONNECTIONS),
        "--keep-alive", str(HEAD_TIMEOUT),
        "--timeout", str(WORKER_TIMEOUT),
        # gunicorn would take the scheme from X-Forwarded-Proto of any client on
        # 127.0.0.1; which forwarded headers count is TENANTRY_TRUSTED_PROXIES' business.
        "--forwarded-allow-ips", "",
    ]  # fmt: skip
