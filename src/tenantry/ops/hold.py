"""What an operation runs under: the tenant's operation lock (one operation at a time) and
the write hold (its writes answer 503 while a backup, restore or delete reads or replaces it)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tenantry.home.layout import MARKER_RECHECK_SECONDS, WRITES_HELD_HEARTBEAT, TenantHome
from tenantry.ops.errors import OperationRefused, UnknownTenant
from tenantry.support.atomic import PRIVATE_DIR
from tenantry.support.locking import file_lock_if_free

LOCKS = ".locks"
# How long an operation waits for another one on the same tenant (a sweep, say) to end.
LOCK_WAIT = 2.0
# Beyond a re-check interval, before an operation that holds writes begins its work.
HOLD_MARGIN = 0.1


@contextlib.contextmanager
def operation_lock(home: TenantHome, slug: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """One backup, restore, clone, delete or sweep (gc) of a tenant at a time, across
    processes (waiting up to ``wait`` seconds for another to end).

    :raises OperationRefused: another one runs.
    """
    folder = home.tenants_dir / LOCKS
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        with file_lock_if_free(folder / f"{slug}.lock") as mine:
            if mine:
                yield
                return
        if time.monotonic() > deadline:
            raise OperationRefused(f"another backup, restore, clone or delete of {slug} is running")
        time.sleep(0.05)


@contextlib.contextmanager
def writes_held(home: TenantHome, *slugs_or_folders: str | Path) -> Iterator[None]:
    """Hold the writes of tenants (by slug) or of tenant folders being built: their
    markers say so to every worker until the block ends, kept fresh by a heartbeat so that
    a killed operation stops holding them on its own.

    The block begins one re-check interval after the markers are written, so that every
    worker's next request has seen them: a write that arrives once the operation works
    answers 503. (A write already in flight then may still finish: see docs/tenant-life.md,
    *Writes held*.)"""
    markers = [
        home.writes_held_marker(item) if isinstance(item, str) else item / "writes-held"
        for item in slugs_or_folders
    ]
    for marker in markers:
        with contextlib.suppress(FileNotFoundError):  # a tenant that lost its folder
            marker.touch()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(WRITES_HELD_HEARTBEAT):
            for marker in markers:
                with contextlib.suppress(OSError):
                    os.utime(marker)

    heartbeat = threading.Thread(target=beat, name="tenantry-writes-held", daemon=True)
    heartbeat.start()
    try:
        time.sleep(MARKER_RECHECK_SECONDS + HOLD_MARGIN)
        yield
    finally:
        stop.set()
        heartbeat.join()
        for marker in markers:
            marker.unlink(missing_ok=True)


def require_tenant(home: TenantHome, slug: str) -> None:
    """:raises UnknownTenant: no tenant of that slug is configured."""
    if not home.exists(slug):
        raise UnknownTenant(slug)
