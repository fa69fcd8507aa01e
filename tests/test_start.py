"""Start-up: what a worker imports before its first /healthz, in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("sqlalchemy", "flask_praetorian", "alembic", "tenantry.server.factory", "tenantry.ops.gc")

PROBE = """
import json, sys
from werkzeug.test import Client
from tenantry.wsgi import application
client = Client(application)
health = client.get("/healthz").status_code
before = sorted(name for name in {heavy!r} if name in sys.modules)
tenant = client.get("/acme/").status_code
after = sorted(name for name in {heavy!r} if name in sys.modules)
print(json.dumps({{"health": health, "before": before, "tenant": tenant, "after": after}}))
"""


def test_healthz_is_answered_before_the_database_and_auth_layers_are_imported(
    home, acme, database_url
):
    """SQLAlchemy, praetorian and alembic load when the first tenant app builds, so a
    restarted worker passes its health check as soon as Flask is up. (On PostgreSQL the
    server reads its database URL with SQLAlchemy before it serves: a home recorded for
    another database must stop it.)"""
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)],
        env={**os.environ, "TENANTRY_HOME": str(home.root), "TENANTRY_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    expected_before = ["sqlalchemy"] if database_url else []
    assert (seen["health"], seen["before"], seen["tenant"]) == (200, expected_before, 200)
    # The probe sees them once a tenant app is built (alembic only where it migrates; the
    # sweeper's module only at the first sweep).
    assert {"sqlalchemy", "flask_praetorian", "tenantry.server.factory"} <= set(seen["after"])
