"""MAX_JSON_BODY on a real gunicorn: an oversized JSON body is refused before it is read
(Content-Length) or as soon as it passes the limit (chunked), on a public route."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest

from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

MiB = 1024**2


def response_of(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.fixture
def server(home, acme):
    with GunicornServer(home, workers=2) as server:
        yield server


def test_a_declared_length_over_the_limit_is_refused_without_sending_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /acme/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(100 * MiB).encode() + b"\r\n\r\n"
        )
        status, body = response_of(sock)  # no byte of the body was sent
    assert (status, body["error"]) == (413, "payload_too_large")


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server):
    chunk = b"a" * (64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /acme/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.settimeout(0.05)
        answer = b""
        while sent < 50 * MiB and not answer:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except OSError:
                break
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(65536, socket.MSG_PEEK)
        sock.settimeout(10)
        status, body = response_of(sock)
    assert (status, body["error"]) == (413, "payload_too_large")
    assert sent < 8 * MiB  # answered long before the client was done (it would send 50)
