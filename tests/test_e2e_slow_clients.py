"""Slow and idle clients on `tenantry serve`'s server model: they never hold the workers
other tenants need, and a request head has 10 s to arrive."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import httpx
import pytest

from tenantry.data.users import create_user
from tenantry.home.loader import load_config_class
from tenantry.server.bodies import BODY_IDLE_SECONDS
from tenantry.server.factory import create_app
from tenantry.server.serving import HEAD_TIMEOUT
from tenantry.web.auth import guard_of
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e


def add_user(home, slug: str) -> None:
    """User alice (password correct-horse-1) at ``slug``."""
    app = create_app(load_config_class(home, slug), home)
    database = app.extensions["tenantry.db"]
    create_user(database, guard_of(app).hash_password, "alice", "correct-horse-1", ["user"])
    database.dispose()


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


def test_downloads_that_stall_do_not_hold_the_worker(home, acme, globex):
    """Files go out by os.sendfile (tenantry.server.worker); readers that stop reading
    leave the one worker free for everybody else, and a fast one gets every byte."""
    add_user(home, "acme")
    data = os.urandom(48 * 1024 * 1024)
    with GunicornServer(home, workers=1) as server:
        login = {"username": "alice", "password": "correct-horse-1"}
        token = httpx.post(f"{server.url}/acme/auth/login", json=login).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        url = f"{server.url}/acme/files/big.bin"
        assert httpx.put(url, content=data, headers=auth, timeout=60).status_code == 201
        request = (
            f"GET /acme/files/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        stalled = []
        # each takes a socket buffer's worth, then stops reading; three, so that acme has
        # one of its MAX_CONCURRENT_REQUESTS (4) left for the full download below
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request)
            sock.recv(4096)
            stalled.append(sock)
        try:
            for _ in range(10):
                started = time.perf_counter()
                assert httpx.get(f"{server.url}/globex/", timeout=5).status_code == 200
                assert time.perf_counter() - started < 1
            fetched = httpx.get(url, headers=auth, timeout=60)
            assert hashlib.sha256(fetched.content).digest() == hashlib.sha256(data).digest()
            ranged = httpx.get(url, headers={**auth, "Range": "bytes=1000-1999"}, timeout=10)
            assert ranged.status_code == 206 and ranged.content == data[1000:2000]
        finally:
            for sock in stalled:
                sock.close()


def _stalled_body(port: int, path: str, length: int, sent: bytes) -> socket.socket:
    """A connection that sent a request's head and ``sent`` of its ``length``-byte body,
    then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
        + sent
    )
    return sock


def test_stalled_bodies_hold_none_of_the_tenants_slots_and_end_in_408(server):
    """Ten connections send a login's head and one byte of its 100-byte body, then nothing
    (more than the tenant's 4 slots per worker, over both workers). The tenant answers its
    other clients all along; each stalled request ends in a JSON 408 after the idle limit;
    """
    stalled = [_stalled_body(server.port, "/acme/auth/login", 100, b"{") for _ in range(10)]
    try:
        started = time.monotonic()
        while time.monotonic() - started < 3:
            response = httpx.get(f"{server.url}/acme/", headers={"Connection": "close"})
            assert response.status_code == 200, response.text
        answers = []
        for sock in stalled:
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            answers.append(data.split(b" ", 2)[1])
        assert answers == [b"408"] * 10, answers
        assert time.monotonic() - started >= BODY_IDLE_SECONDS - 2
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_chunked_upload_ends_in_408_and_leaves_nothing_behind(home, server):
    """An upload without Content-Length (chunked) sends 64 KiB and stops: after the idle
    limit it is answered 408, nothing of it is stored or left in the tenant's incoming
    folder, and its quota reservation is given back (a full-quota upload then fits)."""
    add_user(home, "acme")
    config = home.config_file("acme")
    config.write_text(config.read_text() + f"    STORAGE_QUOTA = {256 * 1024}\n")
    login = {"username": "alice", "password": "correct-horse-1"}
    token = httpx.post(f"{server.url}/acme/auth/login", json=login).json()["access_token"]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        chunk = b"x" * 65536
        sock.sendall(
            f"PUT /acme/files/stalled.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
            "\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )
        started = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        assert data.split(b" ", 2)[1] == b"408", data
        assert time.monotonic() - started >= BODY_IDLE_SECONDS - 2
    finally:
        sock.close()
    auth = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(f"{server.url}/acme/files", headers=auth).json()
    assert "stalled.bin" not in {item["name"] for item in listed["files"]}
    assert not [p for p in home.instance_dir("acme").rglob(".incoming/*") if p.is_file()]
    full = httpx.put(
        f"{server.url}/acme/files/full.bin", content=b"y" * (250 * 1024), headers=auth, timeout=30
    )
    assert full.status_code == 201, full.text
