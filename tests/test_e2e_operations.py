"""Tenant operations against a real 2-worker gunicorn: every worker sees
restore, clone and delete within 2 s; writes are held while a backup runs; kill -9 in the
middle of a backup or a restore --force leaves no half archive and the old tenant serving."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tenantry.ops.hold import writes_held
from tests import postgres, test_e2e_files
from tests.server import GunicornServer, poll_until
from tests.test_e2e_files import PASSWORD

pytestmark = pytest.mark.e2e

# a 2-worker server with acme (user alice) and globex, and alice's Authorization header
server = test_e2e_files.server
auth = test_e2e_files.auth

MiB = 1024**2


def every_worker(url: str, status: int, headers=None) -> bool:
    """8 fresh connections (gunicorn spreads them over both workers) all answer ``status``."""
    return all(
        httpx.get(url, headers={"Connection": "close", **(headers or {})}).status_code == status
        for _ in range(8)
    )


def tenantry_command(home, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TENANTRY_HOME": str(home.root)}
    env.pop("TENANTRY_DATABASE_URL", None)
    if home.database_url:
        env["TENANTRY_DATABASE_URL"] = home.database_url
    return subprocess.Popen(
        [sys.executable, "-m", "tenantry.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(home, *args: str) -> str:
    process = tenantry_command(home, *args)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out


def upload(server, auth, name: str, size: int) -> str:
    """A file of ``size`` random bytes; returns its sha256."""
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    for _ in range(size // MiB):
        digest.update(block)

    def body():
        for _ in range(size // MiB):
            yield block

    response = httpx.put(
        f"{server.url}/acme/files/{name}", content=body(), headers=auth, timeout=120
    )
    assert response.status_code == 201, response.text
    return digest.hexdigest()


def downloaded(server, auth, name: str) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", f"{server.url}/acme/files/{name}", headers=auth, timeout=120) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_every_worker_sees_restore_clone_and_delete_within_2_s(home, server, auth, tmp_path):
    httpx.put(f"{server.url}/acme/files/a.txt", content=b"first", headers=auth)
    archive = run(home, "tenants", "backup", "acme", "--out", str(tmp_path)).strip()

    run(home, "tenants", "clone", "acme", "initech")
    poll_until(lambda: every_worker(f"{server.url}/initech/", 200), timeout=2.5)
    login = {"username": "alice", "password": PASSWORD}
    token = httpx.post(f"{server.url}/initech/auth/login", json=login).json()["access_token"]
    clone_auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.url}/initech/files/a.txt", headers=clone_auth).content == b"first"
    assert httpx.get(f"{server.url}/initech/files/a.txt", headers=auth).status_code == 401

    run(home, "tenants", "restore", archive, "--as", "acme-copy")
    poll_until(lambda: every_worker(f"{server.url}/acme-copy/", 200), timeout=2.5)

    # restore --force over the live tenant: every worker serves the archived files
    httpx.put(f"{server.url}/acme/files/a.txt", content=b"second", headers=auth)
    assert every_worker(f"{server.url}/acme/files/a.txt", 200, auth)
    run(home, "tenants", "restore", archive, "--force")

    def all_first() -> bool:
        return all(
            httpx.get(
                f"{server.url}/acme/files/a.txt", headers={**auth, "Connection": "close"}
            ).content
            == b"first"
            for _ in range(8)
        )

    poll_until(all_first, timeout=2.5)

    run(home, "tenants", "delete", "initech", "--yes")
    poll_until(lambda: every_worker(f"{server.url}/initech/", 404), timeout=2.5)
    assert every_worker(f"{server.url}/acme/", 200)
    assert "Traceback" not in server.log()


def test_writes_are_held_in_every_worker_while_a_backup_runs(home, server, auth):
    url = f"{server.url}/acme/files/held.txt"
    with writes_held(home, "acme"):

        def writes_refused() -> bool:
            responses = [
                httpx.put(url, content=b"x", headers={**auth, "Connection": "close"})
                for _ in range(8)
            ]
            return all(r.status_code == 503 for r in responses) and responses[0]

        refused = poll_until(writes_refused, timeout=2.5)
        assert refused.headers["Retry-After"] == "10"
        assert refused.json()["error"] == "service_unavailable"
        assert every_worker(f"{server.url}/acme/files", 200, auth)  # reads go on
        assert every_worker(f"{server.url}/globex/", 200)
    poll_until(lambda: httpx.put(url, content=b"x", headers=auth).status_code in (200, 201), 2.5)


def test_a_backup_holds_writes_while_it_runs(home, server, auth, tmp_path):
    upload(server, auth, "big.bin", 256 * MiB)
    process = tenantry_command(home, "tenants", "backup", "acme", "--out", str(tmp_path))
    statuses = []
    while process.poll() is None:
        statuses.append(
            httpx.put(f"{server.url}/acme/files/during.txt", content=b"x", headers=auth).status_code
        )
        time.sleep(0.02)
    assert process.returncode == 0
    assert 503 in statuses, statuses
    archive = process.stdout.read().strip()
    assert os.path.exists(archive)
    poll_until(
        lambda: (
            httpx.put(f"{server.url}/acme/files/after.txt", content=b"x", headers=auth).status_code
            == 201
        ),
        timeout=2.5,
    )


def writes_resume_once_stale(marker, server, auth) -> None:
    """A killed operation's hold lapses 10 s after its last heartbeat: pretend they passed,
    then every worker takes writes again within its re-check."""
    os.utime(marker, (time.time() - 11, time.time() - 11))
    url = f"{server.url}/acme/files/x.txt"
    poll_until(lambda: httpx.put(url, content=b"x", headers=auth).status_code in (200, 201), 2.5)


def kill_when(process: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_kill_9_during_a_backup_leaves_no_half_archive(home, server, auth, tmp_path):
    upload(server, auth, "big.bin", 96 * MiB)
    out = tmp_path / "backups"
    out.mkdir()
    process = tenantry_command(home, "tenants", "backup", "acme", "--out", str(out))

    def half_written() -> bool:
        return any(p.stat().st_size > 8 * MiB for p in out.glob(".*.part"))

    kill_when(process, half_written)
    assert list(out.glob("*.tar.gz")) == []  # nothing under a final name
    # its writes are held until the marker goes stale (10 s without a heartbeat): pretend
    marker = home.writes_held_marker("acme")
    assert marker.exists()
    writes_resume_once_stale(marker, server, auth)
    pins = home.instance_dir("acme") / "storage" / ".pins"
    assert any(pins.iterdir())  # the killed backup's pinned blobs
    assert "acme: removed 1 files" in run(home, "gc", "acme")
    assert not any(pins.iterdir())
    # and the next backup is whole
    archive = run(home, "tenants", "backup", "acme", "--out", str(out)).strip()
    run(home, "tenants", "verify", archive)


def test_kill_9_during_restore_force_leaves_the_old_tenant_serving(home, server, auth, tmp_path):
    expected = upload(server, auth, "big.bin", 96 * MiB)
    archive = run(home, "tenants", "backup", "acme", "--out", str(tmp_path)).strip()
    httpx.put(f"{server.url}/acme/files/after.txt", content=b"after the backup", headers=auth)
    process = tenantry_command(home, "tenants", "restore", archive, "--force")

    def restoring() -> bool:
        return any(
            p.stat().st_size > 8 * MiB
            for p in home.tenants_dir.glob(".restore-*/tenant/storage/.blobs/*")
        )

    kill_when(process, restoring)
    # its writes were held from the start (they would have been lost with the old tenant;
    # every worker sees the hold within its 1 s re-check), until the marker goes stale
    # without its heartbeat, 10 s after the kill: asked first, so that the checks below
    # cannot outlast it on a slow machine
    poll_until(
        lambda: (
            httpx.put(f"{server.url}/acme/files/x.txt", content=b"x", headers=auth).status_code
            == 503
        ),
        timeout=2.5,
    )
    # the old tenant serves, whole, in every worker
    assert every_worker(f"{server.url}/acme/files/after.txt", 200, auth)
    assert downloaded(server, auth, "big.bin") == expected
    marker = home.writes_held_marker("acme")
    writes_resume_once_stale(marker, server, auth)
    # what the killed restore left aside goes with gc; then a restore goes through
    assert list(home.tenants_dir.glob(".restore-*"))
    assert "left-overs of killed restores" in run(home, "gc")
    assert not list(home.tenants_dir.glob(".restore-*"))
    if home.database_url:
        assert postgres.staging_schemas() == []
    run(home, "tenants", "restore", archive, "--force")
    poll_until(
        lambda: httpx.get(f"{server.url}/acme/files/after.txt", headers=auth).status_code == 404,
        timeout=2.5,
    )
    assert downloaded(server, auth, "big.bin") == expected


def test_the_server_sweeps_what_a_killed_restore_left(home, acme, tmp_path):
    archive = run(home, "tenants", "backup", "acme", "--out", str(tmp_path)).strip()
    process = tenantry_command(home, "tenants", "restore", archive, "--as", "acme-two")
    process.wait()
    assert process.returncode == 0
    left = home.tenants_dir / ".restore-acme-two-deadbeef0000"
    (left / "tenant").mkdir(parents=True)
    (left / "tenant" / "tenant.db").write_bytes(b"half")
    with GunicornServer(home, workers=2, env={"TENANTRY_SWEEP_INTERVAL": "0.5"}) as server:
        assert every_worker(f"{server.url}/acme-two/", 200)  # the workers' sweepers start
        poll_until(lambda: not left.exists(), timeout=5)


def test_restore_force_under_sustained_writes_loses_no_write_it_acknowledged_after(
    home, server, auth, tmp_path
):
    """Two clients PUT distinct files as fast as they can while `restore --force` runs.
    Every write answered 201 after the restore ended is stored (none went through a
    worker's stale connection to the database the restore replaced), writes meanwhile are
    201 or 503, never anything else, and no file is stored that was not answered 201."""
    archive = run(home, "tenants", "backup", "acme", "--out", str(tmp_path)).strip()
    stop = threading.Event()
    outcomes: list[tuple[str, float, int]] = []

    def write(prefix: str) -> None:
        with httpx.Client(headers=auth, timeout=30) as client:
            n = 0
            while not stop.is_set():
                name = f"{prefix}-{n}.txt"
                response = client.put(f"{server.url}/acme/files/{name}", content=name.encode())
                outcomes.append((name, time.monotonic(), response.status_code))
                n += 1

    writers = [threading.Thread(target=write, args=(p,)) for p in ("a", "b")]
    for writer in writers:
        writer.start()
    try:
        time.sleep(0.5)
        run(home, "tenants", "restore", archive, "--force")
        ended = time.monotonic()
        time.sleep(2)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    listed = httpx.get(f"{server.url}/acme/files", headers=auth).json()
    stored = {item["name"] for item in listed["files"]}
    assert {status for _, _, status in outcomes} <= {201, 503}, outcomes
    after = [name for name, answered, status in outcomes if status == 201 and answered > ended]
    assert after and set(after) <= stored, sorted(set(after) - stored)
    acknowledged = {name for name, _, status in outcomes if status == 201}
    assert stored - {"a.txt"} <= acknowledged


def test_a_restore_waits_for_the_writes_in_flight_before_it_works(home, server, auth, tmp_path):
    """A slow upload is on its way when `restore --force` starts: the restore waits for
    it to be answered before it replaces anything (its hold takes the write gate every
    write holds), so no write is answered 201 into the database being replaced."""
    archive = run(home, "tenants", "backup", "acme", "--out", str(tmp_path)).strip()
    answered: dict = {}

    def slow_body():
        for _ in range(8):
            yield b"x" * 1024
            time.sleep(0.5)

    def upload_slowly() -> None:
        response = httpx.put(
            f"{server.url}/acme/files/slow.bin", content=slow_body(), headers=auth, timeout=60
        )
        answered["status"], answered["at"] = response.status_code, time.monotonic()

    uploader = threading.Thread(target=upload_slowly)
    uploader.start()
    time.sleep(1)  # the upload is in flight
    run(home, "tenants", "restore", archive, "--force")
    restored = time.monotonic()
    uploader.join()
    assert answered["status"] == 201 and answered["at"] < restored
    # Answered before the restore worked, so the restore replaced it: never half of each.
    assert httpx.get(f"{server.url}/acme/files/slow.bin", headers=auth).status_code == 404


def test_delete_under_sustained_writes_keeps_every_acknowledged_write_in_its_archive(
    home, server, auth
):
    """Two clients PUT distinct files while `tenants delete` runs. Its hold takes the write
    gate, so every write answered 201 went in before the backup began and is in the trash
    archive: restoring that archive brings each one back. Writes meanwhile are answered
    201, 503 (held) or 404 (gone), never a 500."""
    stop = threading.Event()
    outcomes: list[tuple[str, int]] = []

    def write(prefix: str) -> None:
        with httpx.Client(headers=auth, timeout=30) as client:
            n = 0
            while not stop.is_set():
                name = f"{prefix}-{n}.txt"
                response = client.put(f"{server.url}/acme/files/{name}", content=name.encode())
                outcomes.append((name, response.status_code))
                n += 1

    writers = [threading.Thread(target=write, args=(p,)) for p in ("a", "b")]
    for writer in writers:
        writer.start()
    try:
        time.sleep(0.5)
        out = run(home, "tenants", "delete", "acme", "--yes")
        time.sleep(1)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert {status for _, status in outcomes} <= {201, 503, 404}, outcomes
    acknowledged = {name for name, status in outcomes if status == 201}
    assert len(acknowledged) > 5
    archive = out.strip().rsplit("its archive: ", 1)[1]
    run(home, "tenants", "restore", archive)
    assert poll_until(
        lambda: httpx.get(f"{server.url}/acme/files", headers=auth).status_code == 200, timeout=5
    )
    listed = httpx.get(f"{server.url}/acme/files", headers=auth).json()
    stored = {item["name"] for item in listed["files"]}
    assert acknowledged <= stored, sorted(acknowledged - stored)
