"""tenantry serve's worker sends files with os.sendfile, cooperatively (gevent)."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import gevent
import pytest
from gevent import socket as gevent_socket

from tenantry.server import worker as gevent_worker
from tenantry.server.worker import cooperative_sendfile

MiB = 1024 * 1024


@pytest.fixture
def pair():
    sender, receiver = gevent_socket.socketpair()
    yield sender, receiver
    sender.close()
    receiver.close()


def drain(sock, size: int) -> bytes:
    """Read ``size`` bytes, slowly enough that the sender's buffer fills up."""
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(64 * 1024, size - got))
        assert chunk, "the sender stopped early"
        chunks.append(chunk)
        got += len(chunk)
        gevent.sleep(0)
    return b"".join(chunks)


def test_a_file_goes_out_by_sendfile_and_the_others_keep_running(tmp_path, pair, monkeypatch):
    data = os.urandom(20 * MiB + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    calls = []
    real_sendfile = os.sendfile

    def counted(*args):
        calls.append(args[3])
        return real_sendfile(*args)

    monkeypatch.setattr(gevent_worker.os, "sendfile", counted)
    sender, receiver = pair
    ticks = []
    ticking = gevent.spawn(lambda: [ticks.append(1) or gevent.sleep(0.001) for _ in iter(int, 1)])
    with open(path, "rb") as handle:
        sending = gevent.spawn(cooperative_sendfile, sender, handle, 100, len(data) - 100)
        received = drain(receiver, len(data) - 100)
        assert sending.get(timeout=30) == len(data) - 100
        assert handle.tell() == len(data)
    ticking.kill()
    assert received == data[100:]
    assert calls and max(calls) <= gevent_worker.SENDFILE_BLOCK
    assert ticks  # the hub ran other greenlets while the file went out


def test_a_fast_reader_cannot_keep_the_worker_to_itself(tmp_path, pair, monkeypatch):
    """Even when the socket never fills, the sender yields every FAIR_SHARE bytes."""
    monkeypatch.setattr(gevent_worker, "FAIR_SHARE", 64 * 1024)
    data = os.urandom(2 * MiB)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    sender, receiver = pair
    yields = []

    def sleep(seconds=0):
        yields.append(seconds)
        gevent.sleep(seconds)

    # only the sender's own yields are counted (drain() yields too)
    monkeypatch.setattr(gevent_worker, "gevent", SimpleNamespace(sleep=sleep))
    with open(path, "rb") as handle:
        reading = gevent.spawn(drain, receiver, len(data))
        assert cooperative_sendfile(sender, handle) == len(data)
    assert reading.get(timeout=30) == data
    assert len(yields) >= 2


def test_what_has_no_file_descriptor_goes_gevents_own_way(pair):
    sender, receiver = pair
    assert cooperative_sendfile(sender, io.BytesIO(b"abc" * 1000)) == 3000
    assert drain(receiver, 3000) == b"abc" * 1000


def test_a_socket_of_another_kind_never_gets_raw_file_bytes(tmp_path, pair, monkeypatch):
    """TLS sockets subclass gevent's socket: sendfile would write past the encryption."""

    class Wrapped(gevent_socket.socket):
        pass

    sender, receiver = pair
    wrapped = Wrapped(sender.family, sender.type, fileno=sender.detach())
    calls = []
    monkeypatch.setattr(gevent_worker.os, "sendfile", lambda *args: calls.append(args))
    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 5000)
    with open(path, "rb") as handle:
        assert cooperative_sendfile(wrapped, handle) == 5000
    assert drain(receiver, 5000) == b"x" * 5000
    assert calls == []
    wrapped.close()


HASH_BESIDE_PROBE = """
from gevent import monkey
monkey.patch_all()
import hashlib, json, sys, threading
from tenantry.storage.local import TenantStorage, _helper_thread
real_ident = monkey.get_original("_thread", "get_ident")
seen = []
with _helper_thread() as beside:
    wait = beside(lambda _: seen.append(real_ident()), b"")
    wait()
storage = TenantStorage(sys.argv[1])
storage.ensure()
chunks = [bytes([n]) * 65536 for n in range(40)]
received = storage.receive(iter(chunks), max_size=1 << 30, room=1 << 30)
print(json.dumps({
    "own_thread": seen[0] != real_ident(),
    "sha256_ok": received.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest(),
    "bytes_ok": received.path.read_bytes() == b"".join(chunks),
}))
"""


def test_an_upload_is_hashed_in_a_real_thread_beside_its_write_under_gevent(tmp_path):
    """Under gevent's monkey-patching a thread pool's threads are greenlets, which run one
    after the other: the hash must go to an operating-system thread, and still be right."""
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", HASH_BESIDE_PROBE, str(tmp_path / "storage")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"own_thread": True, "sha256_ok": True, "bytes_ok": True}
