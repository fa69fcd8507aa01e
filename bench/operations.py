"""Tenant operations at size: backup, verify, restore and clone of a tenant with 1 GiB of
files and 10 000 users, each a real `tenantry` command; prints seconds, MB/s and the
command's peak RSS. `make bench-ops` (PG=1 for PostgreSQL at TENANTRY_TEST_DATABASE_URL)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tenantry.builtin.files.models import store_file
from tenantry.data.db import tenant_database
from tenantry.data.users import User
from tenantry.home.layout import DATABASE_URL_ENV_VAR, HOME_ENV_VAR, TenantHome
from tenantry.ops.lifecycle import create_tenant
from tenantry.storage.local import TenantStorage

MiB = 1024 * 1024


def populate(home: TenantHome, slug: str, users: int, files: int, file_mib: int) -> int:
    """``users`` users (one password hash shared, for speed) and ``files`` random files."""
    create_tenant(home, slug)
    database = tenant_database(home, slug)
    storage = TenantStorage(home.instance_dir(slug) / "storage")
    try:
        rows = [
            {
                "username": f"user{n:05d}",
                "password_hash": "$pbkdf2-sha512$25000$bench$" + "x" * 86,
                "roles": "user",
                "active": True,
                "created_at": datetime.now(UTC),
            }
            for n in range(users)
        ]
        with database.engine.begin() as connection:
            connection.execute(User.__table__.insert(), rows)
        total = 0
        for n in range(files):
            block = os.urandom(MiB)
            store_file(
                database, storage, f"file{n:03d}.bin", (block for _ in range(file_mib)),
                max_size=1 << 40, quota=1 << 40,
            )  # fmt: skip
            total += file_mib * MiB
        return total
    finally:
        database.dispose()


def timed(home: TenantHome, *args: str) -> tuple[float, float, str]:
    """Run ``tenantry ARGS``: seconds, peak RSS in MiB, and its output."""
    env = {**os.environ, HOME_ENV_VAR: str(home.root)}
    env.pop(DATABASE_URL_ENV_VAR, None)
    if home.database_url:
        env[DATABASE_URL_ENV_VAR] = home.database_url
    # VmHWM, not ru_maxrss: that keeps the parent's high-water mark across exec
    script = (
        "import re, sys\n"
        "from tenantry.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    status = open('/proc/self/status').read()\n"
        "    peak = re.search(r'VmHWM:\\s+(\\d+)', status).group(1)\n"
        "    print(f'peak_rss_kib={peak}', file=sys.stderr)\n"
    )
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"tenantry {' '.join(args)} failed:\n{result.stderr}")
    peak = next(
        int(line.split("=")[1]) for line in result.stderr.splitlines() if "peak_rss_kib" in line
    )
    return seconds, peak / 1024, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--file-mib", type=int, default=64)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    url = None
    if args.postgres:
        url = os.environ.get(
            "TENANTRY_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    with tempfile.TemporaryDirectory(prefix="tenantry-ops-") as folder:
        home = TenantHome(Path(folder) / "home", url)
        (home.root / "config").mkdir(parents=True)
        slug = f"ops{os.getpid()}"
        made = []
        try:
            size = populate(home, slug, args.users, args.files, args.file_mib)
            made.append(slug)
            backend = "postgresql" if url else "sqlite"
            print(
                f"tenant: {args.users} users, {args.files} files, {size / MiB:.0f} MiB ({backend})"
            )
            out = Path(folder) / "archives"
            out.mkdir()
            seconds, rss, archive = timed(home, "tenants", "backup", slug, "--out", str(out))
            archive_mib = Path(archive).stat().st_size / MiB
            rows = [("backup", seconds, rss)]
            rows.append(("verify", *timed(home, "tenants", "verify", archive)[:2]))
            made.append(f"{slug}-r")
            rows.append(
                (
                    "restore --as",
                    *timed(home, "tenants", "restore", archive, "--as", f"{slug}-r")[:2],
                )
            )
            rows.append(
                ("restore --force", *timed(home, "tenants", "restore", archive, "--force")[:2])
            )
            made.append(f"{slug}-c")
            rows.append(("clone", *timed(home, "tenants", "clone", slug, f"{slug}-c")[:2]))
            rows.append(
                ("delete --yes", *timed(home, "tenants", "delete", f"{slug}-c", "--yes")[:2])
            )
            made.remove(f"{slug}-c")
            print(f"archive: {archive_mib:.0f} MiB")
            print(f"{'operation':<16} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13}")
            for name, seconds, rss in rows:
                rate = size / seconds / 1e6
                print(f"{name:<16} {seconds:>8.2f} {rate:>8.0f} {rss:>13.0f}")
        finally:
            for made_slug in made:
                if url:
                    tenant_database(home, made_slug).drop_schema()


if __name__ == "__main__":
    main()
