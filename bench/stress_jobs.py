"""The jobs part of ``make stress``: fairness between tenants, and a worker killed mid-job.

Tenant ``aa`` has 10 000 short jobs queued; two ``tenantry worker`` processes (one job at a
time each) run jobs. Fifty times, tenant ``bb`` queues one job and the scenario measures,
on the store's clock, how long it waited to start; halfway, one worker is killed with
``kill -9`` and started again. At the end no job may be lost: every one of ``bb``'s
succeeded, and ``aa``'s are each queued, running or succeeded (none failed, none gone).

    python -m bench.stress_jobs [--tries 50] [--backlog 10000] [--jobs-url URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tenantry.jobs.place import jobs_store
from tenantry.jobs.records import NewJob

MODULE = "stress_jobs_probe"
SOURCE = """
import time

from flask import Blueprint

from tenantry.endpoint import job

blueprint = Blueprint("stress_jobs_probe", __name__)


@job
def short():
    time.sleep(0.01)
"""


def tenantry(root: Path, env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tenantry.cli", "--home", str(root), *args],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip


def start_worker(root: Path, env: dict, log) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tenantry.cli", "--home", str(root), "worker"]
    return subprocess.Popen(
        [*argv, "--concurrency", "1"], env=env, stdout=log, stderr=log, start_new_session=True
    )


def run(tries: int, backlog: int, jobs_url: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="tenantry-stress-jobs-") as temp:
        root = Path(temp) / "home"
        modules = Path(temp) / "modules"
        modules.mkdir()
        (modules / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")]),
            "TENANTRY_LOG_LEVEL": "WARNING",
        }
        env.pop("TENANTRY_DATABASE_URL", None)
        env.pop("TENANTRY_JOBS_URL", None)
        if jobs_url:
            env["TENANTRY_JOBS_URL"] = jobs_url
            os.environ["TENANTRY_JOBS_URL"] = jobs_url
        sys.path.insert(0, str(modules))
        for slug in ("aa", "bb"):
            tenantry(root, env, "tenants", "create", slug, "--blueprints", f"landing,{MODULE}")
        config = root / "config" / "aa.py"
        config.write_text(config.read_text() + f"    MAX_QUEUED_JOBS = {backlog * 2}\n")

        store = jobs_store(root / "tenants")
        if jobs_url:
            for slug in ("aa", "bb"):
                store.drop_tenant(slug)  # a shared store: a previous run's jobs go
        started = time.monotonic()
        for _ in range(backlog):
            store.enqueue(
                NewJob("aa", MODULE, "short", "[]"), max_queued=backlog * 2, max_running=2
            )
        enqueue_seconds = time.monotonic() - started
        log = open(Path(temp) / "workers.log", "w")  # noqa: SIM115 - closed below
        workers = [start_worker(root, env, log) for _ in range(2)]
        waits, a_queued, killed = [], [], False
        deadline = time.monotonic() + 60  # the workers up: their first jobs of aa done
        while store.list("aa", state="succeeded", limit=1)[1] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            for attempt in range(tries):
                if attempt == tries // 2:
                    os.kill(workers[0].pid, signal.SIGKILL)  # mid-job, most likely
                    workers[0].wait()
                    workers[0] = start_worker(root, env, log)
                    killed = True
                a_queued.append(store.counts()["aa"][0])
                job_id, _ = store.enqueue(
                    NewJob("bb", MODULE, "short", "[]"), max_queued=1000, max_running=2
                )
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    job = store.get("bb", job_id)
                    if job["state"] in ("succeeded", "failed"):
                        break
                    time.sleep(0.01)
                waits.append(job["started"] - job["enqueued"] if job["started"] else None)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=120)
            log.close()
        b_jobs, _ = store.list("bb", limit=tries + 1)
        store.recount()
        a_states = {
            state: store.list("aa", state=state, limit=1)[1]
            for state in ("queued", "running", "succeeded", "failed", "cancelled")
        }
        measured = [wait for wait in waits if wait is not None]
        return {
            "store": jobs_url.split(":", 1)[0] if jobs_url else "embedded (SQLite)",
            "tries": tries,
            "b started within 1 s": sum(1 for wait in measured if wait <= 1.0),
            "b wait p50 ms": round(statistics.median(measured) * 1000, 1),
            "b wait max ms": round(max(measured) * 1000, 1),
            "b waits ms": [round(wait * 1000) for wait in measured],
            "a queued (min)": min(a_queued),
            "a enqueue µs": round(enqueue_seconds / backlog * 1e6),
            "worker killed": killed,
            "b succeeded": sum(1 for job in b_jobs if job["state"] == "succeeded"),
            "a by state": a_states,
            "a lost": backlog - sum(a_states.values()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--jobs-url", help="TENANTRY_JOBS_URL (default: jobs in the home)")
    args = parser.parse_args()
    result = run(args.tries, args.backlog, args.jobs_url)
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
