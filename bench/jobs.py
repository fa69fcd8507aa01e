"""The jobs part of ``make bench``: enqueue latency and end-to-end throughput of empty jobs,
on the embedded store (SQLite in the home) and on Redis.

Throughput is end to end: jobs queued first, then one ``tenantry worker --concurrency 2``
started, timed from its start until every job has succeeded (each job a forked process
that builds its tenant's app, as in production).

    python -m bench.jobs [--jobs 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import redis

from tenantry.home.layout import TenantHome
from tenantry.jobs.place import JOBS_URL_ENV_VAR, forget_stores, jobs_store
from tenantry.jobs.records import NewJob
from tenantry.ops.lifecycle import create_tenant

MODULE = "bench_jobs_probe"
SOURCE = """
from flask import Blueprint

from tenantry.endpoint import job

blueprint = Blueprint("bench_jobs_probe", __name__)


@job
def empty():
    return None
"""
REDIS_URL = "redis://127.0.0.1:6379/0"
TENANTS = ("ja", "jb", "jc", "jd")


def measure(folder: Path, jobs_url: str | None, count: int) -> dict[str, float]:
    """Enqueue latency (p50, µs) and empty jobs per second end to end, on one store."""
    label = "Redis" if jobs_url else "embedded"
    home = TenantHome(folder / f"jobs-home-{label}")
    modules = folder / "job-modules"
    modules.mkdir(exist_ok=True)
    (modules / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    sys.path.insert(0, str(modules))
    saved = os.environ.get(JOBS_URL_ENV_VAR)
    if jobs_url:
        os.environ[JOBS_URL_ENV_VAR] = jobs_url
    else:
        os.environ.pop(JOBS_URL_ENV_VAR, None)
    forget_stores()
    try:
        for slug in TENANTS:
            create_tenant(home, slug, blueprints=("landing", MODULE))
        store = jobs_store(home.tenants_dir)
        latencies = []
        for n in range(count):
            started = time.perf_counter()
            store.enqueue(
                NewJob(TENANTS[n % len(TENANTS)], MODULE, "empty", "[]"),
                max_queued=count,
                max_running=2,
            )
            latencies.append(time.perf_counter() - started)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")]),
            "TENANTRY_LOG_LEVEL": "WARNING",
        }
        argv = [sys.executable, "-m", "tenantry.cli", "--home", str(home.root), "worker"]
        started = time.perf_counter()
        worker = subprocess.Popen([*argv, "--concurrency", "2"], env=env)
        try:
            while sum(store.list(slug, state="succeeded", limit=1)[1] for slug in TENANTS) < count:
                time.sleep(0.02)
            seconds = time.perf_counter() - started
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        for slug in TENANTS:
            store.drop_tenant(slug)
    finally:
        if saved is None:
            os.environ.pop(JOBS_URL_ENV_VAR, None)
        else:
            os.environ[JOBS_URL_ENV_VAR] = saved
        forget_stores()
    return {
        f"job enqueue p50 µs ({label})": round(statistics.median(latencies) * 1e6, 1),
        f"empty jobs/s end to end ({label})": round(count / seconds, 1),
    }


def job_figures(folder: Path, count: int = 400) -> dict[str, float | str]:
    """Both stores' figures (Redis's: "unreachable" where no Redis answers)."""
    figures: dict[str, float | str] = dict(measure(folder, None, count))
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        figures["empty jobs/s end to end (Redis)"] = "unreachable"
        return figures
    figures.update(measure(folder, REDIS_URL, count))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-jobs-") as temp:
        for name, value in job_figures(Path(temp), args.jobs).items():
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()
