"""Background jobs end to end: a real gunicorn takes the requests that enqueue them, a real
``tenantry worker`` runs them, on both databases (the jobs in the home, or in PostgreSQL).

Each job writes what it saw (``current_tenant``, ``current_job()``) into its tenant's own
folder, so that the tests read what ran, for whom, and how often, from the outside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tenantry.jobs.place import JOBS_SCHEMA, JOBS_URL_ENV_VAR, forget_stores, jobs_store
from tenantry.ops.delete import delete_tenant
from tenantry.ops.lifecycle import set_enabled
from tests.server import GunicornServer, free_port
from tests.test_e2e_metrics import scrape, total

pytestmark = pytest.mark.e2e

MODULE = "jobs_probe"
SOURCE = '''
"""A module with jobs, for the tests: each job notes what it saw in its tenant's folder."""

import json
import time
from pathlib import Path

from flask import Blueprint, request

from tenantry.endpoint import auth_required, current_job, current_tenant, job

blueprint = Blueprint("jobs_probe", __name__)


def note(**fields):
    path = Path(current_tenant.config["INSTANCE_PATH"]) / "jobs.log"
    with path.open("a") as log:
        log.write(json.dumps({"tenant": current_tenant.slug, **fields}) + "\\n")


@job
def record(text):
    note(event="record", text=text, job=current_job().id, attempt=current_job().attempt)
    return {"tenant": current_tenant.slug, "text": text}


@job(retries=1)
def flaky(text):
    note(event="flaky", text=text, attempt=current_job().attempt)
    if current_job().attempt == 1:
        raise RuntimeError("the first try fails")
    return text


@job
def always_fails():
    raise ValueError("no such report")


@job(timeout=1)
def too_slow():
    time.sleep(30)


@job
def slow(text, seconds):
    note(event="start", text=text, attempt=current_job().attempt)
    time.sleep(seconds)
    note(event="end", text=text, attempt=current_job().attempt)
    return text


JOBS = {"record": record, "flaky": flaky, "always_fails": always_fails, "too_slow": too_slow,
        "slow": slow}


@blueprint.route("/enqueue", methods=["POST"])
def enqueue():
    body = request.get_json()
    job_id = current_tenant.jobs.enqueue(JOBS[body["job"]], *body.get("args", []),
                                         key=body.get("key"))
    return {"id": job_id}, 202


@blueprint.route("/enqueue-mine", methods=["POST"])
@auth_required()
def enqueue_mine():
    return {"id": current_tenant.jobs.enqueue(record, request.get_json()["text"])}, 202
'''


@pytest.fixture
def jobs_home(home, tmp_path, monkeypatch, database_url):
    """The home, its jobs in it (SQLite) or, on PostgreSQL, in the database's schema; the
    probe module importable by the server, the worker and this process."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")])
    )
    if database_url is not None:
        monkeypatch.setenv(JOBS_URL_ENV_VAR, database_url)
    forget_stores()
    yield home
    forget_stores()
    if database_url is not None:
        with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{JOBS_SCHEMA}" CASCADE')


@pytest.fixture
def tenants(jobs_home, make_tenant):
    blueprints = ("landing", MODULE)
    return [make_tenant(slug, blueprints=blueprints) for slug in ("acme", "globex")]


def start_worker(home, concurrency: int = 2) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "tenantry"), "--home", str(home.root), "worker",
         "--concurrency", str(concurrency)],
        stdout=subprocess.DEVNULL,
        stderr=open(home.root / "worker.log", "ab"),
        start_new_session=True,
    )  # fmt: skip


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        worker.wait(timeout=60)


def enqueue(server, slug: str, job: str, *args, key: str | None = None) -> str:
    response = httpx.post(
        f"{server.url}/{slug}/enqueue", json={"job": job, "args": list(args), "key": key}
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job_of(home, slug: str, job_id: str) -> dict:
    return jobs_store(home.tenants_dir).get(slug, job_id)


def wait_for(home, slug: str, job_id: str, states=("succeeded", "failed"), timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = job_of(home, slug, job_id)
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} of {slug} is still {job_of(home, slug, job_id)}")


def notes(home, slug: str) -> list[dict]:
    path = home.instance_dir(slug) / "jobs.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_job_runs_with_its_own_tenant(jobs_home, tenants):
    """Forty interleaved jobs of two tenants on two runners at once: each job saw exactly
    its own tenant, ran once, and its result is its tenant's."""
    home = jobs_home
    with GunicornServer(home) as server:
        ids = {"acme": [], "globex": []}
        for n in range(20):  # interleaved: acme-0, globex-0, acme-1, ...
            for slug in ids:
                ids[slug].append(enqueue(server, slug, "record", f"{slug}-{n}"))
        worker = start_worker(home)
        try:
            for slug, job_ids in ids.items():
                for n, job_id in enumerate(job_ids):
                    job = wait_for(home, slug, job_id)
                    assert job["state"] == "succeeded", job
                    assert job["result"] == {"tenant": slug, "text": f"{slug}-{n}"}
                    assert job_of(home, {"acme": "globex"}.get(slug, "acme"), job_id) is None
        finally:
            stop_worker(worker)
    for slug in ("acme", "globex"):
        seen = notes(home, slug)
        assert {entry["tenant"] for entry in seen} == {slug}
        assert sorted(entry["text"] for entry in seen) == sorted(f"{slug}-{n}" for n in range(20))
        assert {entry["attempt"] for entry in seen} == {1}


def test_retries_timeouts_and_failures(jobs_home, tenants):
    home = jobs_home
    with GunicornServer(home) as server:
        flaky = enqueue(server, "acme", "flaky", "again")
        fails = enqueue(server, "acme", "always_fails")
        slow = enqueue(server, "acme", "too_slow")
        worker = start_worker(home)
        try:
            job = wait_for(home, "acme", flaky)
            assert (job["state"], job["attempt"], job["result"]) == ("succeeded", 2, "again")
            job = wait_for(home, "acme", fails)
            assert (job["state"], job["error"]) == ("failed", "ValueError: no such report")
            job = wait_for(home, "acme", slow)
            assert (job["state"], job["error"]) == ("failed", "timed out after 1 s")
        finally:
            stop_worker(worker)
    assert [entry["attempt"] for entry in notes(home, "acme")] == [1, 2]


def test_a_key_names_one_unfinished_job(jobs_home, tenants):
    with GunicornServer(jobs_home) as server:
        first = enqueue(server, "acme", "record", "nightly", key="nightly")
        assert enqueue(server, "acme", "record", "nightly", key="nightly") == first
        assert enqueue(server, "globex", "record", "nightly", key="nightly") != first


def test_a_killed_worker_loses_no_job(jobs_home, tenants):
    """kill -9 of the worker and its job's process (a host lost): the job runs again, from
    the start, within 60 s, on another worker."""
    home = jobs_home
    with GunicornServer(home) as server:
        job_id = enqueue(server, "acme", "slow", "report", 2)
    worker = start_worker(home)
    try:
        deadline = time.monotonic() + 30
        while not notes(home, "acme") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notes(home, "acme") == [
            {"tenant": "acme", "event": "start", "text": "report", "attempt": 1}
        ]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        killed = time.monotonic()
        assert job_of(home, "acme", job_id)["state"] == "running"
        worker = start_worker(home)
        job = wait_for(home, "acme", job_id, timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        stop_worker(worker)
    assert (job["state"], job["attempt"], job["result"]) == ("succeeded", 2, "report")
    assert [(e["event"], e["attempt"]) for e in notes(home, "acme")] == [
        ("start", 1),
        ("start", 2),
        ("end", 2),
    ]


def test_a_disabled_tenants_jobs_wait_and_a_deleted_ones_are_dropped(jobs_home, tenants):
    home = jobs_home
    with GunicornServer(home) as server:
        waiting = enqueue(server, "acme", "record", "later")
        dropped = enqueue(server, "globex", "record", "never")
    set_enabled(home, "acme", False)
    delete_tenant(home, "globex", keep_backup=False)
    worker = start_worker(home)
    try:
        time.sleep(3)
        assert job_of(home, "acme", waiting)["state"] == "queued"
        assert job_of(home, "globex", dropped) is None
        set_enabled(home, "acme", True)
        assert wait_for(home, "acme", waiting)["state"] == "succeeded"
    finally:
        stop_worker(worker)


def test_sigterm_lets_the_running_job_finish(jobs_home, tenants):
    home = jobs_home
    with GunicornServer(home) as server:
        job_id = enqueue(server, "acme", "slow", "tidy", 2)
    worker = start_worker(home)
    deadline = time.monotonic() + 30
    while not notes(home, "acme") and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.terminate()
    assert worker.wait(timeout=60) == 0
    job = job_of(home, "acme", job_id)
    assert (job["state"], job["attempt"]) == ("succeeded", 1)


def test_enqueue_refuses_what_could_not_run(jobs_home, tenants, make_tenant):
    """Arguments that are not JSON values, a function that is not a @job, a module the
    tenant did not enable: TypeError in the request, before anything is queued. A full
    queue: 429."""
    from tenantry.endpoint import job
    from tenantry.home.loader import load_config_class
    from tenantry.server.factory import create_app

    home = jobs_home
    make_tenant("plain", blueprints=("landing",))
    module = __import__(MODULE)
    app = create_app(load_config_class(home, "acme"), home)
    with app.test_request_context():
        jobs = app.extensions["tenantry.tenant"].jobs
        for bad in [(1, 2), {1: "a"}, float("nan"), {"a": {1, 2}}, Path("x")]:
            with pytest.raises(TypeError, match="JSON"):
                jobs.enqueue(module.record, bad)
        with pytest.raises(TypeError, match="not a @job"):
            jobs.enqueue(module.note, "x")
        assert jobs.enqueue(module.record, {"nested": [1, "two", None, True, 2.5]})
    other = create_app(load_config_class(home, "plain"), home)
    refused = pytest.raises(TypeError, match="not an endpoint module this tenant enabled")
    with other.test_request_context(), refused:
        other.extensions["tenantry.tenant"].jobs.enqueue(module.record, "x")
    with pytest.raises(TypeError, match="module-level"):

        @job
        def local():
            pass

    config = home.config_file("globex")
    config.write_text(config.read_text() + "    MAX_QUEUED_JOBS = 2\n")
    with GunicornServer(home) as server:
        enqueue(server, "globex", "record", "1")
        enqueue(server, "globex", "record", "2")
        response = httpx.post(f"{server.url}/globex/enqueue", json={"job": "record", "args": ["3"]})
        assert response.status_code == 429
        assert response.json()["error"] == "too_many_requests"
        assert "MAX_QUEUED_JOBS is 2" in response.json()["message"]


def test_the_jobs_routes(jobs_home, tenants, client, add_user, login, tenantry):
    """GET /jobs (admin), GET and DELETE /jobs/<id> (an admin, or the user who enqueued
    it); another tenant's job, another user's, or a malformed id: 404."""
    from tests.conftest import bearer

    add_user("acme", "root", roles=("admin",))
    add_user("acme", "alice")
    add_user("acme", "bob")
    add_user("globex", "boss", roles=("admin",))
    admin, alice, bob = (bearer(login("acme", name)) for name in ("root", "alice", "bob"))
    boss = bearer(login("globex", "boss"))
    mine = client.post("/acme/enqueue-mine", json={"text": "alice's"}, headers=alice).json["id"]
    other = client.post("/acme/enqueue", json={"job": "record", "args": ["anon"]}).json["id"]

    listed = client.get("/acme/jobs", headers=admin).json
    assert listed["total"] == 2 and [job["id"] for job in listed["data"]] == [other, mine]
    assert set(listed["data"][0]) == {
        "id", "module", "name", "state", "attempt", "progress", "result", "error",
        "enqueued", "started", "finished",
    }  # fmt: skip
    assert listed["data"][0]["enqueued"].endswith("Z") and listed["data"][0]["state"] == "queued"
    assert client.get("/acme/jobs?state=succeeded", headers=admin).json == {"data": [], "total": 0}
    assert client.get("/acme/jobs?state=bogus", headers=admin).status_code == 400
    assert client.get("/acme/jobs", headers=alice).status_code == 403
    assert client.get("/acme/jobs").status_code == 401

    assert client.get(f"/acme/jobs/{mine}", headers=alice).json["name"] == "record"
    assert client.get(f"/acme/jobs/{mine}", headers=admin).status_code == 200
    for who, url in [(bob, f"/acme/jobs/{mine}"), (alice, f"/acme/jobs/{other}"),
                     (boss, f"/globex/jobs/{mine}"), (admin, "/acme/jobs/nope"),
                     (admin, "/acme/jobs/" + "0" * 32)]:  # fmt: skip
        assert client.get(url, headers=who).status_code == 404, url
        assert client.delete(url, headers=who).status_code == 404, url

    assert client.delete(f"/acme/jobs/{mine}", headers=alice).status_code == 204
    assert client.get(f"/acme/jobs/{mine}", headers=alice).json["state"] == "cancelled"
    assert client.delete(f"/acme/jobs/{mine}", headers=alice).status_code == 409
    audit = client.get("/acme/audit?action=job.cancel", headers=admin).json["data"]
    assert [(entry["actor"], entry["target"]) for entry in audit] == [("alice", mine)]
    paths = client.get("/acme/openapi.json").json["paths"]
    assert {"get"} <= set(paths["/jobs"]) and {"get", "delete"} <= set(paths["/jobs/{job_id}"])

    # The operator's commands, on the same jobs
    listed = tenantry("jobs", "list", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    assert {job["id"]: job["state"] for job in json.loads(listed.output)["data"]} == {
        mine: "cancelled",
        other: "queued",
    }
    assert tenantry("jobs", "show", "acme", mine).output.startswith(f"id: {mine}")
    assert tenantry("jobs", "show", "globex", mine).exit_code == 2
    retried = tenantry("jobs", "retry", "acme", mine)
    assert retried.exit_code == 0, retried.output
    new_id = retried.output.split()[-1]
    assert client.get(f"/acme/jobs/{new_id}", headers=admin).json["state"] == "queued"
    assert tenantry("jobs", "retry", "acme", other).exit_code == 2  # it did not fail
    assert tenantry("jobs", "cancel", "acme", other).output == f"job {other}: cancelled\n"
    assert tenantry("jobs", "cancel", "acme", other).exit_code == 1  # finished now
    actions = [e["action"] for e in client.get("/acme/audit", headers=admin).json["data"]]
    assert actions[:3] == ["job.cancel", "job.retry", "job.cancel"]


def serve(home, *options) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tenantry"), "--home", str(home.root), "serve",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", *options],
        stdout=subprocess.DEVNULL,
        stderr=open(home.root / "serve.log", "ab"),  # noqa: SIM115 - closed with the process
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError((home.root / "serve.log").read_text())


def test_tenantry_serve_runs_the_jobs_itself(jobs_home, tenants):
    """One host needs no second command; --no-jobs runs none; stopping the server stops
    its job runner (no process is left)."""
    home = jobs_home
    process, url = serve(home, "--no-jobs")
    try:
        idle = httpx.post(f"{url}/acme/enqueue", json={"job": "record", "args": ["x"]}).json()["id"]
        time.sleep(2)
        assert job_of(home, "acme", idle)["state"] == "queued"
    finally:
        process.terminate()
        process.wait(timeout=30)
    process, url = serve(home)
    try:
        assert wait_for(home, "acme", idle)["state"] == "succeeded"
        fresh = httpx.post(f"{url}/acme/enqueue", json={"job": "record", "args": ["y"]}).json()[
            "id"
        ]
        assert wait_for(home, "acme", fresh)["state"] == "succeeded"
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0
    assert processes_of(home) == []


def processes_of(home) -> list[str]:
    """The command lines of the processes still running for ``home`` (by their
    TENANTRY_HOME or --home)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if "tenantry" in command and (
            f"TENANTRY_HOME={home.root}".encode() in environ or f"--home {home.root}" in command
        ):
            found.append(command)
    return found


def test_the_servers_metrics_count_the_jobs(jobs_home, tenants):
    """`tenantry serve --metrics-bind`: its job runner counts each attempt's outcome by
    tenant, the attempts' durations, and each tenant's queued jobs."""
    home = jobs_home
    port = free_port()
    process, url = serve(home, "--metrics-bind", f"127.0.0.1:{port}")
    try:
        done = httpx.post(f"{url}/acme/enqueue", json={"job": "record", "args": ["m"]})
        failed = httpx.post(f"{url}/globex/enqueue", json={"job": "always_fails"})
        wait_for(home, "acme", done.json()["id"])
        wait_for(home, "globex", failed.json()["id"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            samples = scrape(port)
            if (
                total(samples, "tenantry_jobs_queued", tenant="acme") == 0
                and any(name == "tenantry_jobs_queued" for name, _labels in samples)
                and total(samples, "tenantry_jobs_total") >= 2
            ):
                break
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert total(samples, "tenantry_jobs_total", tenant="acme", outcome="succeeded") == 1
    assert total(samples, "tenantry_jobs_total", tenant="globex", outcome="failed") == 1
    assert total(samples, "tenantry_job_duration_seconds_count") == 2
    assert ("tenantry_jobs_queued", (("tenant", "acme"),)) in samples
