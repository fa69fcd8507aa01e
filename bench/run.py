"""``make bench``: tenantry's speed as ratios to a bare Flask app measured in the same run.

Every server is gunicorn with the same settings (2 sync workers, loopback) and is loaded by
wrk (installed with apt-get if missing). Bare and tenantry runs alternate, and each ratio
is the median over rounds of (tenantry req/s) / (the bare run just before it), so a noisy
moment of the machine hits both sides. The other figures (start, cold request, memory,
throughput, migration) are absolute. Timings are printed, never asserted.

    python -m bench.run [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.generate import generate_tenants, small_database_template
from bench.jobs import job_figures
from tenantry.data.users import create_user
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.server.factory import create_app
from tenantry.web.auth import guard_of
from tests.server import GunicornServer

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway tenant in a temp folder
SPREAD_TENANTS = 200
START_TENANTS = 1000
MEMORY_TENANTS = 400
TRANSFER_BYTES = 512 * 1024**2
PG_URL = os.environ.get(
    "TENANTRY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

TARGETS = {
    "landing via dispatcher": 0.92,
    "/status": 0.85,
    "protected /auth/me": 0.85,
    "standalone per-tenant WSGI": 0.95,
    f"landing over {SPREAD_TENANTS} tenants": 0.90,
}


def ensure_wrk() -> str:
    """The wrk binary, installed from the distribution's packages if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing it with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def wrk(binary: str, url: str, seconds: float, headers=(), script: Path | None = None) -> float:
    """Requests per second wrk reaches on ``url``; non-2xx answers fail the benchmark."""
    argv = [binary, "-t2", "-c16", f"-d{seconds:g}s", url]
    for header in headers:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors on {url}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def add_admin(home: TenantHome, slug: str) -> None:
    app = create_app(load_config_class(home, slug), home)
    database = app.extensions["tenantry.db"]
    create_user(database, guard_of(app).hash_password, "admin", PASSWORD, ["admin"])
    database.dispose()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ratios(args, binary, bare, scenarios, folder) -> dict[str, tuple[float, float]]:
    """Median ratio and median req/s of each scenario, alternating with bare runs. A
    scenario driven by a wrk script is compared with bare driven by the same script (all
    of its paths pointing at bare's one route), so wrk's own extra work hits both."""
    for url, headers, script in scenarios.values():  # warm every tenant and worker
        for _ in range(4):
            httpx.get(url, headers=dict(h.split(": ", 1) for h in headers))
        if script is not None:
            wrk(binary, url, 1, headers, script)
    results = {}
    for name, (url, headers, script) in scenarios.items():
        rounds, rates = [], []
        for _ in range(args.rounds):
            bare_script = None if script is None else spread_script(folder, None, script.name)
            base = wrk(binary, bare.url + "/", args.seconds, script=bare_script)
            rate = wrk(binary, url, args.seconds, headers, script)
            rounds.append(rate / base)
            rates.append(rate)
        results[name] = (statistics.median(rounds), statistics.median(rates))
        print(f"  {name:32} {results[name][0]:.3f}x  ({results[name][1]:,.0f} req/s)", flush=True)
    return results


def spread_script(folder: Path, slugs: list[str] | None, like: str | None = None) -> Path:
    """A wrk script cycling through each slug's landing page; with ``slugs`` None, the
    same number of paths as the script ``like``, all ``/`` (for bare)."""
    if slugs is None:
        count = (folder / like).read_text().count('"/')
        script, paths = folder / f"bare-{like}", ", ".join(['"/"'] * count)
    else:
        script = folder / "spread.lua"
        paths = ", ".join(f'"/{slug}/"' for slug in slugs)
    script.write_text(
        f"local paths = {{{paths}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n'
    )
    return script


def start_time(folder: Path, app_spec: str, path: str, home: Path | None) -> float:
    """Seconds from importing the WSGI app to its first answer, in a fresh interpreter
    (interpreter start-up itself excluded)."""
    code = (
        "import time; t = time.perf_counter()\n"
        f"module, _, name = {app_spec!r}.partition(':')\n"
        "import importlib; app = getattr(importlib.import_module(module), name)\n"
        "from werkzeug.test import Client\n"
        f"response = Client(app).get({path!r})\n"
        "assert response.status_code == 200, response.status_code\n"
        "print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "TENANTRY_LOG_LEVEL": "WARNING"}
    if home is not None:
        env["TENANTRY_HOME"] = str(home)
    samples = []
    for _ in range(5):
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
        )
        if run.returncode != 0:
            raise RuntimeError(run.stderr)
        samples.append(float(run.stdout))
    return statistics.median(samples)


def throughput(server, token: str, folder: Path, label: str = "") -> dict[str, float]:
    """Upload and download of one 512 MiB file with curl, and the peak growth of the
    worker's RSS while it is uploaded (sampled every 50 ms)."""
    source = folder / "big.bin"
    with open(source, "wb") as handle:
        block = os.urandom(1024**2)
        for _ in range(TRANSFER_BYTES // len(block)):
            handle.write(block)
    pids = server.worker_pids()
    before = {pid: rss_kib(pid) for pid in pids}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    auth = f"Authorization: Bearer {token}"
    url = f"{server.url}/acme/files/big.bin"
    try:
        started = time.perf_counter()
        subprocess.run(
            ["curl", "-sf", "-T", str(source), "-H", auth, url, "-o", "/dev/null"], check=True
        )
        upload = TRANSFER_BYTES / (time.perf_counter() - started)
    finally:
        done.set()
        sampler.join()
    started = time.perf_counter()
    subprocess.run(["curl", "-sf", "-H", auth, url, "-o", "/dev/null"], check=True)
    download = TRANSFER_BYTES / (time.perf_counter() - started)
    source.unlink()
    figures = {
        f"upload MB/s{label}": upload / 1e6,
        f"download MB/s{label}": download / 1e6,
        f"worker RSS peak growth on upload KiB{label}": max(
            peak[pid] - before[pid] for pid in pids
        ),
    }
    if not label:
        figures["disk write MB/s (the upload's ceiling)"] = disk_write_rate(folder) / 1e6
    return figures


def object_storage_throughput(folder: Path) -> dict[str, float]:
    """:func:`throughput` with the tenant's files in a bucket of moto's S3 server (which
    keeps objects in its own memory, on this machine: a floor for a real store, whose
    figures depend on its network)."""
    from tests.s3 import CREDENTIALS, MotoServer

    saved = dict(os.environ)
    try:
        with MotoServer() as moto:
            os.environ.update(CREDENTIALS)
            os.environ["TENANTRY_S3_ENDPOINT_URL"] = moto.url
            os.environ["TENANTRY_STORAGE_URL"] = "s3://tenantry-bench/bench"
            from tenantry.storage.s3 import ObjectStore

            ObjectStore("tenantry-bench", moto.url).client.create_bucket(Bucket="tenantry-bench")
            home = TenantHome(folder / "s3-home")
            from tenantry.ops.lifecycle import create_tenant

            create_tenant(home, "acme", name="Acme Corp")
            add_admin(home, "acme")
            # One worker, warmed by the login: a worker's first request on the store
            # imports boto3 and makes its client (~40 MiB, once per process), which is
            # not what an upload holds (the upload reached the other worker one run in
            # two and measured 77 MiB).
            with GunicornServer(home, workers=1) as server:
                token = httpx.post(
                    f"{server.url}/acme/auth/login",
                    json={"username": "admin", "password": PASSWORD},
                ).json()["access_token"]
                return throughput(server, token, folder, label=" (S3: moto)")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def disk_write_rate(folder: Path) -> float:
    """Bytes per second that writing a file as large as the upload (1 MiB writes, then
    fsync, as an upload is stored) takes on the bench's disk, with no server involved."""
    block = os.urandom(1024**2)
    target = folder / "disk-write.bin"
    started = time.perf_counter()
    with open(target, "wb") as handle:
        for _ in range(TRANSFER_BYTES // len(block)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    rate = TRANSFER_BYTES / (time.perf_counter() - started)
    target.unlink()
    return rate


def memory_per_tenant(folder: Path, template: Path, path: str) -> float:
    """KiB of worker RSS per loaded tenant app (all five blueprints), one worker, after
    each tenant answered ``path`` once."""
    home = TenantHome(folder / f"memory-home{path.replace('/', '-')}")
    slugs = generate_tenants(home, MEMORY_TENANTS + 50, database_template=template)
    with GunicornServer(home, workers=1, env={"TENANTRY_LOG_LEVEL": "WARNING"}) as server:
        pid = server.worker_pids()[0]
        with httpx.Client(base_url=server.url) as client:
            for slug in slugs[:50]:  # first builds fill caches shared by every later app
                client.get(f"/{slug}{path}").raise_for_status()
            before = rss_kib(pid)
            for slug in slugs[50:]:
                client.get(f"/{slug}{path}").raise_for_status()
            after = rss_kib(pid)
    return (after - before) / MEMORY_TENANTS


def cold_requests(server, slugs: list[str]) -> float:
    """Median milliseconds of the first request to a tenant no worker has loaded."""
    samples = []
    with httpx.Client(base_url=server.url) as client:
        for slug in slugs:
            started = time.perf_counter()
            client.get(f"/{slug}/").raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def migrate_thousand_on_postgres(folder: Path) -> float | str:
    """Seconds `tenantry migrate` takes for 1000 fresh tenant schemas on PostgreSQL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    database = f"tenantry_bench_{os.getpid()}"
    try:
        admin = psycopg.connect(
            host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
            password=url.password, autocommit=True, connect_timeout=3,
        )  # fmt: skip
    except psycopg.Error as exc:
        return f"skipped: PostgreSQL unreachable ({exc.__class__.__name__})"
    with admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        bench_url = url.set(database=database).render_as_string(hide_password=False)
        home = TenantHome(folder / "pg-home", bench_url)
        generate_tenants(home, START_TENANTS)
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "tenantry.cli", "--home", str(home.root), "migrate"],
            env={**os.environ, "TENANTRY_DATABASE_URL": bench_url},
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
        if run.returncode != 0 or run.stdout.count("at revision") != START_TENANTS:
            raise RuntimeError(f"migrate failed:\n{run.stderr[-2000:]}")
        return elapsed
    finally:
        with psycopg.connect(
            host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
            password=url.password, autocommit=True,
        ) as admin:  # fmt: skip
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--serving",
        choices=("serve", "sync", "out-of-the-box"),
        default="serve",
        help="every server as `tenantry serve` runs it (gevent), or with gunicorn's own "
        "defaults (sync workers), bare Flask included; out-of-the-box: tenantry as "
        "`tenantry serve` runs it against bare Flask under `gunicorn -w 2` (sync)",
    )
    args = parser.parse_args()
    binary = ensure_wrk()
    os.environ["TENANTRY_LOG_LEVEL"] = os.environ.get("TENANTRY_LOG_LEVEL", "INFO")
    os.environ.pop("TENANTRY_DATABASE_URL", None)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as temp:
        folder = Path(temp)
        home = TenantHome(folder / "home")
        from tenantry.ops.lifecycle import create_tenant

        create_tenant(home, "acme", name="Acme Corp")
        add_admin(home, "acme")
        template = small_database_template(home, "acme", folder / "template.db")
        spread = generate_tenants(home, SPREAD_TENANTS, prefix="s", database_template=template)
        cold = generate_tenants(home, 60, prefix="c", database_template=template)

        model = {
            "serve": "2 gevent workers",
            "sync": "2 sync workers",
            "out-of-the-box": "tenantry: `tenantry serve` (2 gevent workers); bare Flask: "
            "`gunicorn -w 2` (sync)",
        }[args.serving]
        print(f"wrk -t2 -c16, {args.seconds:g} s runs, {args.rounds} rounds, {model}")
        out_of_the_box = args.serving == "out-of-the-box"
        serving = {"serving": "serve" if out_of_the_box else args.serving}

        def bare_flask(name: str) -> GunicornServer:
            bare_home = TenantHome(folder / name)
            bare_home.root.mkdir()
            return GunicornServer(
                bare_home,
                app="bench.bare:application",
                chdir=REPO,
                ready_path="/",
                serving="sync" if out_of_the_box else args.serving,
            )

        bare_server = bare_flask("bare")
        # The same bare app again, measured as if it were tenantry: its ratio shows how far
        # the method itself (server start order, ports, the machine) moves a ratio.
        control_server = bare_flask("control")
        standalone = GunicornServer(
            home, app="wsgi:application", chdir=home.instance_dir("acme"), ready_path="/",
            **serving,
        )  # fmt: skip
        quiet = GunicornServer(home, env={"TENANTRY_LOG_LEVEL": "WARNING"}, **serving)
        main_server = GunicornServer(home, **serving)
        with (
            bare_server as bare,
            main_server as server,
            standalone as alone,
            quiet,
            control_server as control,
        ):
            token = httpx.post(
                f"{server.url}/acme/auth/login", json={"username": "admin", "password": PASSWORD}
            ).json()["access_token"]
            bearer = (f"Authorization: Bearer {token}",)
            scenarios = {
                "landing via dispatcher": (f"{server.url}/acme/", (), None),
                "/status": (f"{server.url}/acme/status", (), None),
                "protected /auth/me": (f"{server.url}/acme/auth/me", bearer, None),
                "standalone per-tenant WSGI": (f"{alone.url}/", (), None),
                "landing, access log off": (f"{quiet.url}/acme/", (), None),
                f"landing over {SPREAD_TENANTS} tenants": (
                    server.url + "/",
                    (),
                    spread_script(folder, spread),
                ),
                "control: bare Flask against itself": (f"{control.url}/", (), None),
            }
            print("ratios to bare Flask (higher is better; target in brackets):")
            report["ratios"] = ratios(args, binary, bare, scenarios, folder)
            report["cold first request ms"] = cold_requests(server, cold)
            report.update(throughput(server, token, folder))
        report.update(object_storage_throughput(folder))
        report.update(job_figures(folder))

        for count in (1, START_TENANTS):
            start_home = TenantHome(folder / f"start-home-{count}")
            generate_tenants(start_home, count, database_template=template)
            report[f"start with {count} tenants s"] = start_time(
                folder, "tenantry.wsgi:application", "/t00000/", start_home.root
            )
        # What a load balancer's health check waits for after a (re)start.
        report[f"start with {START_TENANTS} tenants to /healthz s"] = start_time(
            folder, "tenantry.wsgi:application", "/healthz", start_home.root
        )
        report["start of bare Flask s"] = start_time(folder, "bench.bare:application", "/", None)
        report["memory per loaded tenant KiB (landing)"] = memory_per_tenant(folder, template, "/")
        report["memory per loaded tenant KiB (/status)"] = memory_per_tenant(
            folder, template, "/status"
        )
        report[f"migrate {START_TENANTS} PostgreSQL schemas s"] = migrate_thousand_on_postgres(
            folder
        )

    print("\nsummary (figure, target):")
    for name, (ratio, rate) in report["ratios"].items():
        target = (
            f">= {TARGETS[name]}x"
            if name in TARGETS
            else "(1.0 if the method is fair)"
            if name.startswith("control")
            else "(no target)"
        )
        print(f"  {name:40} {ratio:6.3f}x   {target:10} ({rate:,.0f} req/s)")
    absolute_targets = {
        "cold first request ms": "< 3 ms",
        "upload MB/s": ">= 400 MB/s",
        "disk write MB/s (the upload's ceiling)": "(reference)",
        "download MB/s": ">= 1000 MB/s",
        "worker RSS peak growth on upload KiB": "flat",
        "upload MB/s (S3: moto)": "(reference)",
        "download MB/s (S3: moto)": "(reference)",
        "worker RSS peak growth on upload KiB (S3: moto)": "flat",
        "start with 1 tenants s": "(reference)",
        f"start with {START_TENANTS} tenants s": "< 0.35 s",
        f"start with {START_TENANTS} tenants to /healthz s": "< 0.35 s",
        "start of bare Flask s": "(reference)",
        "memory per loaded tenant KiB (landing)": "<= 60 KiB",
        "memory per loaded tenant KiB (/status)": "<= 60 KiB",
        f"migrate {START_TENANTS} PostgreSQL schemas s": "< 60 s",
        "job enqueue p50 µs (embedded)": "(reference)",
        "empty jobs/s end to end (embedded)": "(reference)",
        "job enqueue p50 µs (Redis)": "(reference)",
        "empty jobs/s end to end (Redis)": "(reference)",
    }
    for name, value in report.items():
        if name == "ratios":
            continue
        shown = f"{value:10.3f}" if isinstance(value, float) else f"{value!s:>10}"
        print(f"  {name:40} {shown}   {absolute_targets[name]}")
    print(json.dumps({"bench": report}, default=str))


if __name__ == "__main__":
    main()
