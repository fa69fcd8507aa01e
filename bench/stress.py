"""``make stress``: the attacks of resource isolation against a real ``tenantry serve``.

Each scenario runs one attack on tenant ``target`` for a few seconds while a probe asks
another tenant (``victim``) for ``GET /`` every 50 ms on a fresh connection, and prints
the victim's p50/p99 and errors, what the attacker was answered, and the workers' peak
RSS. Loopback only, bounded in time and count. Then the jobs scenario
(:mod:`bench.stress_jobs`) on the embedded store and on Redis.

    python -m bench.stress [--seconds 10] [--baseline REV]

``--baseline REV`` runs the same scenarios first against the code of git revision REV
(checked out in a temporary worktree), for a before/after table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.stress_jobs import run as run_jobs_stress

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "stress-password-1"  # noqa: S105 (a throwaway home)
MiB = 1024**2
QUOTA = 8 * MiB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``tenantry serve`` with its defaults, of the code at ``src``, on a fresh home."""

    def __init__(self, src: Path, root: Path, admin: bool = False):
        self.src, self.root, self.admin = src, root, admin
        self.port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(src),
            "TENANTRY_HOME": str(root),
            "TENANTRY_LOG_LEVEL": "WARNING",
        }
        self.env.pop("TENANTRY_DATABASE_URL", None)

    def cli(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [sys.executable, "-m", "tenantry.cli", *args],
            env=self.env, input=stdin, text=True, check=True, capture_output=True,
        )  # fmt: skip

    def set_up(self) -> None:
        self.cli("tenants", "create", "victim", "--blueprints", "landing")
        self.cli("tenants", "create", "target")
        config = self.root / "config" / "target.py"
        config.write_text(config.read_text() + f"    STORAGE_QUOTA = {QUOTA}\n")
        role = ("users", "add", "target", "mallory", "--role", "admin", "--password-stdin")
        self.cli(*role, stdin=PASSWORD + "\n")
        if self.admin:
            self.cli("operators", "add", "ops", "--password-stdin", stdin=PASSWORD + "\n")

    def __enter__(self) -> Server:
        argv = [sys.executable, "-m", "tenantry.cli", "serve", "--bind", f"127.0.0.1:{self.port}"]
        if self.admin:
            argv += ["--admin-bind", f"127.0.0.1:{self.admin_port}"]
        self.log = open(self.root / "server.log", "w")
        self.process = subprocess.Popen(argv, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the server did not come up")

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def worker_rss_mib(self) -> float:
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return 0.0
        peak = 0.0
        for child in children:
            try:
                for line in Path(f"/proc/{child}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
            except OSError:
                pass
        return peak

    def token(self) -> str:
        response = httpx.post(
            f"{self.url}/target/auth/login",
            json={"username": "mallory", "password": PASSWORD},
            timeout=30,
        )
        return response.json()["access_token"]


def probe(
    server: Server, stop: threading.Event, latencies: list, errors: list, path: str = "/victim/"
) -> None:
    """The victim: another tenant's landing page (or ``path``), every 50 ms, on a fresh
    connection."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            response = httpx.get(f"{server.url}{path}", headers={"Connection": "close"}, timeout=5)
            if response.status_code != 200:
                errors.append(response.status_code)
        except httpx.HTTPError as exc:
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - started)
        stop.wait(0.05)


def stalled_body(server: Server, stop: threading.Event, statuses: Counter) -> None:
    """A login whose head and one byte of its 100-byte body are sent, then nothing; what
    the server answers is counted, and the next one starts."""
    head = (
        b"POST /target/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
                sock.sendall(head)
                answer = b""
                while not stop.is_set() and b"\r\n" not in answer:
                    try:
                        chunk = sock.recv(64)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    answer += chunk
                if answer:
                    statuses[answer.split(b" ", 2)[1].decode()] += 1
        except OSError as exc:
            statuses[type(exc).__name__] += 1
            stop.wait(0.2)


def trickle(server: Server, stop: threading.Event, statuses: Counter, idle: bool) -> None:
    """A connection that sends its request head a byte a second (or nothing at all), and
    opens another as soon as the server closes it."""
    head = b"GET /target/ HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"s" * 200 + b"\r\n\r\n"
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
                sent = 0
                while not stop.is_set():
                    if not idle and sent < len(head):
                        sock.send(head[sent : sent + 1])
                        sent += 1
                    try:
                        if sock.recv(1) == b"":
                            statuses["closed by the server"] += 1
                            break
                    except TimeoutError:
                        pass  # recv waits a second: the trickle's pace
        except OSError as exc:
            statuses[type(exc).__name__] += 1
            stop.wait(0.2)


def flood_login(server: Server, stop: threading.Event, statuses: Counter) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            body = {"username": f"u{random.randrange(10**9)}", "password": "wrong-password-1"}
            try:
                statuses[client.post(f"{server.url}/target/auth/login", json=body).status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1


def flood_slowest(server: Server, stop: threading.Event, statuses: Counter, token: str) -> None:
    """The dearest route a user has: a zip of a 2 MiB dataset, built per request."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30, headers=auth) as client:
        while not stop.is_set():
            try:
                response = client.post(
                    f"{server.url}/target/api/datasets/download", json={"datasets": ["big"]}
                )
                statuses[response.status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1


def huge_json(server: Server, stop: threading.Event, statuses: Counter) -> None:
    """A 1 GiB JSON body to the public login, sent as fast as the server takes it."""
    chunk = b" " * (256 * 1024)
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(
                    b"POST /target/auth/login HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{"
                )
                sock.settimeout(0.01)
                answer = b""
                while not stop.is_set() and not answer:
                    try:
                        answer = sock.recv(64)
                    except TimeoutError:
                        with contextlib.suppress(TimeoutError):
                            sock.sendall(chunk)
                statuses[answer[9:12].decode() if answer else "no answer"] += 1
        except OSError as exc:
            statuses[type(exc).__name__] += 1
            stop.wait(0.1)


def put_and_link(server: Server, stop: threading.Event, statuses: Counter, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30, headers=auth) as client:
        turn = 0
        while not stop.is_set():
            turn += 1
            name = f"f{threading.get_ident() % 1000}-{turn % 4}.bin"
            try:
                put = client.put(
                    f"{server.url}/target/files/{name}", content=os.urandom(256 * 1024)
                )
                statuses[f"put {put.status_code}"] += 1
                link = client.post(f"{server.url}/target/files/{name}/link", json={"ttl": 3600})
                statuses[f"link {link.status_code}"] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1


def disk_bytes(root: Path) -> int:
    storage = root / "tenants" / "target" / "storage"
    return sum(path.stat().st_size for path in storage.rglob("*") if path.is_file())


def run_scenario(
    server: Server, name: str, attackers: list, seconds: float, path: str = "/victim/"
) -> dict:
    stop = threading.Event()
    latencies, errors, statuses = [], [], Counter()
    threads = [threading.Thread(target=attack, args=(server, stop, statuses, *extra), daemon=True)
               for attack, extra in attackers]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    prober = threading.Thread(
        target=probe, args=(server, stop, latencies, errors, path), daemon=True
    )
    prober.start()
    peak_rss, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak_rss = max(peak_rss, server.worker_rss_mib())
        time.sleep(0.25)
    stop.set()
    prober.join(10)
    for thread in threads:
        thread.join(15)
    latencies.sort()
    return {
        "scenario": name,
        "victim requests": len(latencies),
        "victim errors": len(errors),
        "p50 ms": round(statistics.median(latencies) * 1000) if latencies else None,
        "p99 ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000)
        if latencies
        else None,
        "attacker": dict(statuses.most_common(6)),
        "worker RSS MiB": round(peak_rss),
    }


def console_in_use(server: Server, stop: threading.Event) -> None:
    """An operator looking at the console all along (its figures kept fresh meanwhile)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.admin_port}", timeout=30) as client:
        client.get("/login")
        form = {"csrf": client.cookies["tenantry_csrf"], "name": "ops", "password": PASSWORD}
        client.post("/login", data=form)
        while not stop.wait(0.5):
            for path in ("/tenants", "/tenants/target", "/tenants?q=vic"):
                client.get(path)


def run_all(src: Path, seconds: float, label: str, admin: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="tenantry-stress-") as temp:
        server = Server(src, Path(temp), admin=admin)
        server.set_up()
        results = []
        stop = threading.Event()
        with server, contextlib.ExitStack() as cleanup:
            if admin:
                watcher = threading.Thread(target=console_in_use, args=(server, stop), daemon=True)
                watcher.start()
                cleanup.callback(stop.set)
            token = server.token()
            auth = {"Authorization": f"Bearer {token}"}
            httpx.put(
                f"{server.url}/target/files/big.bin", content=os.urandom(2 * MiB), headers=auth
            )
            httpx.post(
                f"{server.url}/target/api/datasets",
                json={"name": "big", "files": ["big.bin"]},
                headers=auth,
            )
            scenarios = [
                ("256 trickling or idle connections",
                 [(trickle, (False,))] * 128 + [(trickle, (True,))] * 128),
                ("32 connections flooding login", [(flood_login, ())] * 32),
                ("32 connections flooding a zip download", [(flood_slowest, (token,))] * 32),
                ("8 concurrent 1 GiB JSON bodies", [(huge_json, ())] * 8),
            ]  # fmt: skip
            for name, attackers in scenarios:
                results.append(run_scenario(server, name, attackers, seconds))
                print(f"[{label}] {results[-1]}", flush=True)
            # Its victim is the target itself: the tenant's other clients.
            results.append(
                run_scenario(
                    server,
                    "32 logins whose bodies stall (victim: the target's own landing)",
                    [(stalled_body, ())] * 32,
                    max(seconds, 15),
                    path="/target/",
                )
            )
            print(f"[{label}] {results[-1]}", flush=True)
            httpx.delete(f"{server.url}/target/api/datasets/big", headers=auth, timeout=30)
            result = run_scenario(
                server, "PUT + link loop, 8 MiB quota", [(put_and_link, (token,))] * 8, seconds
            )
            result["disk MiB"] = round(disk_bytes(server.root) / MiB, 1)
            results.append(result)
            print(f"[{label}] {results[-1]}", flush=True)
    return results


def table(label: str, results: list[dict]) -> str:
    lines = [
        f"{label}:",
        "| scenario | victim answered | p50 | p99 | attacker got | worker RSS | disk |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        answered = f"{r['victim requests'] - r['victim errors']}/{r['victim requests']}"
        got = ", ".join(f"{k}: {v}" for k, v in r["attacker"].items())
        disk = f"{r['disk MiB']} MiB" if "disk MiB" in r else "-"
        lines.append(
            f"| {r['scenario']} | {answered} | {r['p50 ms']} ms | {r['p99 ms']} ms | {got} "
            f"| {r['worker RSS MiB']} MiB | {disk} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--baseline", help="a git revision to run first, for comparison")
    parser.add_argument(
        "--admin", action="store_true", help="also serve the console, an operator using it"
    )
    args = parser.parse_args()
    tables = []
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="tenantry-baseline-") as temp:
            tree = Path(temp) / "tree"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline],
                check=True, capture_output=True,
            )  # fmt: skip
            try:
                results = run_all(tree / "src", args.seconds, f"baseline {args.baseline}")
                tables.append(table(f"before ({args.baseline})", results))
            finally:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
    label = "now, with the console in use" if args.admin else "now"
    tables.append(table(label, run_all(REPO / "src", args.seconds, label, admin=args.admin)))
    print("\n\n".join(tables))
    # Jobs: tenant B's new job behind tenant A's 10 000, a worker killed halfway.
    for jobs_url in (None, "redis://127.0.0.1:6379/0"):
        print("\njobs, fairness and a killed worker:")
        for key, value in run_jobs_stress(tries=50, backlog=10_000, jobs_url=jobs_url).items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
