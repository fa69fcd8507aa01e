"""Slow and idle clients on `tenantry serve`'s server model: they never hold the workers
other tenants need, and a request head has 10 s to arrive."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tenantry.serving import HEAD_TIMEOUT
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(home, acme, globex):
    with GunicornServer(home, workers=2) as server:
        yield server


def test_trickling_and_idle_connections_do_not_hold_up_another_tenant(server):
    stop = threading.Event()
    head = b"GET /acme/ HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"s" * 100 + b"\r\n\r\n"

    def slow_client(idle: bool) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.3) as sock:
            for index in range(len(head)):
                if stop.wait(0.3):
                    return
                if not idle:
                    sock.send(head[index : index + 1])

    clients = [
        threading.Thread(target=slow_client, args=(n % 2 == 0,), daemon=True) for n in range(64)
    ]
    for client in clients:
        client.start()
    time.sleep(0.5)
    latencies = []
    try:
        for _ in range(30):
            started = time.perf_counter()
            response = httpx.get(
                f"{server.url}/globex/", headers={"Connection": "close"}, timeout=5
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert max(latencies) < 2, latencies  # with sync workers: none answered within 5 s


def test_a_request_head_that_takes_too_long_is_closed(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
        sock.send(b"GET /acme/ HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - started < HEAD_TIMEOUT + 5:
            try:
                sock.send(b"X")  # a byte a second, never the end of the head
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    elapsed = time.monotonic() - started
    assert closed and HEAD_TIMEOUT - 1 <= elapsed <= HEAD_TIMEOUT + 3, elapsed


def test_plain_gunicorn_with_its_own_defaults_still_serves(home, acme):
    with GunicornServer(home, serving="sync") as plain:
        assert httpx.get(f"{plain.url}/acme/").json()["tenant"] == "acme"
