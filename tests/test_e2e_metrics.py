"""Prometheus metrics of a real 2-worker `tenantry serve --metrics-bind`:
counts summed over the workers, kept when a worker dies, tenant labels capped, the guards'
refusals by reason, nothing under the tenant routes."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.server import GunicornServer, free_port, poll_until

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """The samples at the metrics address: (name, sorted labels) → value."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def total(samples, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@pytest.fixture
def database_url(monkeypatch):
    """SQLite only: the metrics do not touch the tenants' databases (this overrides the
    suite's fixture that runs a test on both backends)."""
    monkeypatch.delenv("TENANTRY_DATABASE_URL", raising=False)


@pytest.fixture
def metered(home, make_tenant):
    for slug in ("acme", "globex", "initech"):
        make_tenant(slug)
    port = free_port()
    env = {"TENANTRY_METRICS_TENANTS": "2"}
    with GunicornServer(home, workers=2, metrics_bind=f"127.0.0.1:{port}", env=env) as server:
        yield server, port


def fresh(method: str, url: str, **kwargs) -> httpx.Response:
    """A request on a connection of its own (gunicorn spreads them over both workers)."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return httpx.request(method, url, headers=headers, **kwargs)


def test_counts_are_summed_over_both_workers_and_survive_a_worker_dying(metered):
    server, port = metered
    for _ in range(20):
        assert fresh("GET", f"{server.url}/acme/").status_code == 200
    for _ in range(10):
        assert fresh("GET", f"{server.url}/globex/nope").status_code == 404
    samples = scrape(port)
    assert total(samples, "tenantry_requests_total", tenant="acme", code="200") == 20
    assert total(samples, "tenantry_requests_total", tenant="globex", code="404") == 10
    assert total(samples, "tenantry_request_duration_seconds_count") >= 30
    assert total(samples, "tenantry_app_builds_total") >= 2
    assert total(samples, "tenantry_loaded_apps") >= 2

    # a worker killed and replaced: what it counted is still there
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    poll_until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2, 10)
    for _ in range(5):
        assert fresh("GET", f"{server.url}/acme/").status_code == 200
    samples = scrape(port)
    assert total(samples, "tenantry_requests_total", tenant="acme", code="200") == 25


def test_tenants_past_the_label_cap_count_as_other(metered):
    server, port = metered
    for slug in ("acme", "globex", "initech"):
        for _ in range(3):
            assert fresh("GET", f"{server.url}/{slug}/").status_code == 200
    samples = scrape(port)
    tenants = {dict(ls).get("tenant") for (n, ls) in samples if n == "tenantry_requests_total"}
    assert tenants == {"acme", "globex", "_other", ""}  # "": the readiness probe's /healthz
    assert total(samples, "tenantry_requests_total", tenant="_other") == 3
    histogram_labels = {
        k for (n, ls) in samples if n.startswith("tenantry_request_duration") for k, _ in ls
    }
    assert "tenant" not in histogram_labels


def test_refusals_show_up_by_reason_and_tenant_routes_leak_nothing(home, make_tenant):
    make_tenant("acme")
    config = home.config_file("acme")
    config.write_text(config.read_text() + "    MAX_JSON_BODY = 64\n")
    port = free_port()
    with GunicornServer(home, workers=2, metrics_bind=f"127.0.0.1:{port}") as server:
        for _ in range(4):
            body = {"username": "x" * 200, "password": "y"}
            assert fresh("POST", f"{server.url}/acme/auth/login", json=body).status_code == 413
        samples = scrape(port)
        assert total(samples, "tenantry_rejected_total", tenant="acme", reason="body") == 4
        # the tenant routes know nothing of metrics: /metrics is an unknown tenant's 404
        unknown = fresh("GET", f"{server.url}/nosuch/")
        metrics = fresh("GET", f"{server.url}/metrics")
        assert metrics.status_code == 404 and metrics.json() == unknown.json()
        assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
        folder = server.env["PROMETHEUS_MULTIPROC_DIR"]
        assert os.path.isdir(folder)
    # each start has a fresh folder, removed when the server stops
    assert not os.path.exists(folder)


def test_without_metrics_bind_there_is_no_metrics_address(home, make_tenant):
    make_tenant("acme")
    with GunicornServer(home, workers=1) as server:
        assert fresh("GET", f"{server.url}/acme/").status_code == 200
        environ = Path(f"/proc/{server.process.pid}/environ").read_text()
        assert "PROMETHEUS_MULTIPROC_DIR" not in environ


@pytest.mark.parametrize(
    ("bind", "tenants"),
    [("nonsense", "100"), ("127.0.0.1:99999", "100"), ("127.0.0.1:9100", "lots")],
)
def test_serve_refuses_a_bad_metrics_setting(tenantry, acme, bind, tenants, monkeypatch):
    monkeypatch.setenv("TENANTRY_METRICS_TENANTS", tenants)
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"serve started: {args}"))
    result = tenantry("serve", "--metrics-bind", bind)
    assert result.exit_code == 2
    assert "--metrics-bind" in result.output or "TENANTRY_METRICS_TENANTS" in result.output


def test_an_idle_connection_does_not_hold_up_a_scrape_and_a_taken_port_is_refused(
    metered, tenantry, monkeypatch
):
    import socket

    _server, port = metered
    idle = socket.create_connection(("127.0.0.1", port))  # connects, sends nothing
    try:
        started = time.monotonic()
        assert scrape(port)
        assert time.monotonic() - started < 2
    finally:
        idle.close()
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"serve started: {args}"))
    result = tenantry("serve", "--metrics-bind", f"127.0.0.1:{port}")  # the metered one's
    assert result.exit_code == 2 and "--metrics-bind" in result.output
    assert httpx.post(f"http://127.0.0.1:{port}/metrics").status_code == 405


def test_without_metrics_bind_an_inherited_folder_counts_nothing(tmp_path, monkeypatch):
    from tenantry.server import metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("TENANTRY_METRICS_BIND", raising=False)
    monkeypatch.setattr(metrics, "_checked", False)
    monkeypatch.setattr(metrics, "_metrics", None)
    assert metrics.current() is None
