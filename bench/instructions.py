"""Instructions per request, layer by layer, counted with callgrind (repeatable, unlike
seconds: the machine's other load does not move them).

Each variant runs in a process of its own under ``valgrind --tool=callgrind``, twice: with
``N`` requests and with none; the difference over ``N`` is what one request costs. The
variants peel tenantry's request path one layer at a time, in process (no server, no
socket: what the layers themselves cost):

- ``bare``: bench/bare.py's Flask app, the yardstick;
- ``flask``: the tenant's Flask app alone (its routes, flask-restful, our response);
- ``limits``: plus ``RequestLimits`` (the tenant's concurrency and rate guard);
- ``dispatch``: plus the dispatcher (tenant lookup, maintenance, the write gate);
- ``full``: plus ``RequestLog`` (request id, metrics), the access line off;
- ``logged``: the same with the access line on (logging at INFO, as ``tenantry serve``
  runs by default): what ``tenantry.wsgi:application`` runs for a landing request.

    python -m bench.instructions [--requests 2000] [--path /]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ("bare", "flask", "limits", "dispatch", "full", "logged")


def environ(path: str, script_name: str = "") -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def application(variant: str, home_root: str):
    """The WSGI callable of ``variant``, and the path and SCRIPT_NAME it is asked."""
    if variant == "bare":
        from bench.bare import application as bare

        return bare, "/", ""
    from tenantry.home.layout import TenantHome
    from tenantry.server.dispatch import TenantDispatcher
    from tenantry.server.log import RequestLog
    from tenantry.server.registry import TenantRegistry

    registry = TenantRegistry(TenantHome(home_root), check_interval=3600, sweep_interval=0)
    tenant = registry.lookup("acme")
    if variant == "flask":
        flask_app = tenant.app

        def unguarded(env, start):  # Flask's own wsgi_app: RequestLimits replaced it
            return type(flask_app).wsgi_app(flask_app, env, start)

        return unguarded, "/", "/acme"
    if variant == "limits":
        return tenant.app, "/", "/acme"
    dispatcher = TenantDispatcher(registry)
    if variant == "dispatch":
        return dispatcher, "/acme/", ""
    if variant == "logged":
        from tenantry.server.log import configure_logging

        configure_logging("INFO")
    return RequestLog(dispatcher), "/acme/", ""


def serve(variant: str, home_root: str, requests: int) -> None:
    """Ask ``variant`` for the landing page ``requests`` times (after 50 to warm up)."""
    app, path, script_name = application(variant, home_root)

    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    for _ in range(50 + requests):
        body = app(environ(path, script_name), start_response)
        for _chunk in body:
            pass
        if hasattr(body, "close"):
            body.close()
    if set(statuses) != {"200 OK"}:
        raise SystemExit(f"{variant} answered {sorted(set(statuses))}, not 200")


def count(variant: str, home_root: str, requests: int) -> int:
    """Instructions of a run of ``variant`` with ``requests`` requests (callgrind's total)."""
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as out:
        subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}",
                sys.executable, "-m", "bench.instructions", "--serve", variant,
                "--home", home_root, "--requests", str(requests),
            ],
            check=True, capture_output=True,
            env={**os.environ, "TENANTRY_LOG_LEVEL": "WARNING", "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        text = Path(out.name).read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    return int(found.group(1))


def make_home(root: Path) -> None:
    from tenantry.home.layout import TenantHome
    from tenantry.ops.lifecycle import create_tenant

    home = TenantHome(root)
    (home.root / "config").mkdir(parents=True)
    create_tenant(home, "acme", blueprints=("landing", "status", "auth"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.home, args.requests)
        return
    with tempfile.TemporaryDirectory(prefix="tenantry-instructions-") as temp:
        make_home(Path(temp) / "home")
        per_request = {}
        for variant in VARIANTS:
            total = count(variant, str(Path(temp) / "home"), args.requests)
            base = count(variant, str(Path(temp) / "home"), 0)
            per_request[variant] = (total - base) / args.requests
            print(f"{variant}: {per_request[variant] / 1000:.0f} k instructions per request")
    bare = per_request["bare"]
    print("\n| layer | instructions per request | over bare Flask | this layer |")
    print("|---|---|---|---|")
    previous = None
    for variant in VARIANTS:
        value = per_request[variant]
        layer = "" if previous is None else f"{(value - previous) / 1000:+.0f} k"
        print(f"| {variant} | {value / 1000:.0f} k | {(value - bare) / 1000:+.0f} k | {layer} |")
        previous = value if variant != "bare" else None


if __name__ == "__main__":
    main()
