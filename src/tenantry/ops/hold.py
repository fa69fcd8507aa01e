"""What an operation runs under: the tenant's operation lock (one operation at a time) and
the write hold (its writes answer 503 while a backup, restore or delete reads or replaces it)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tenantry.home.layout import LOCKS_FOLDER, WRITES_HELD_HEARTBEAT, TenantHome
from tenantry.ops.errors import OperationFailed, OperationRefused, UnknownTenant
from tenantry.support.atomic import PRIVATE_DIR
from tenantry.support.locking import exclusive_lock_within, file_lock_if_free

# How long an operation waits for another one on the same tenant (a sweep, say) to end.
LOCK_WAIT = 2.0
# How long a hold waits for the writes in flight to finish before it gives up.
WRITES_DRAIN_SECONDS = 120.0


@contextlib.contextmanager
def operation_lock(home: TenantHome, slug: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """One backup, restore, clone, delete or sweep (gc) of a tenant at a time, across
    processes (waiting up to ``wait`` seconds for another to end).

    :raises OperationRefused: another one runs.
    """
    folder = home.tenants_dir / LOCKS_FOLDER
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
    """Hold the writes of tenants (by slug) or of tenant folders being built, for the
    block: a write that arrives meanwhile answers 503, on every worker of every host.

    Two things hold them. A marker in the tenant's folder says so to every worker (kept
    fresh by a heartbeat, so that a killed operation stops holding on its own). And the
    tenant's write gate: every write request holds it shared from before its tenant's app
    is chosen until its answer is sent, and the block begins once this holds it
    exclusive, so no write is in flight when it begins and none starts until it ends.
    A write that arrives after the block re-checks its tenant's files first, and so never
    writes through a database the block replaced.

    :raises OperationFailed: the writes in flight did not finish within
        :data:`WRITES_DRAIN_SECONDS`.
    """
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
        with contextlib.ExitStack() as gates:
            (home.tenants_dir / LOCKS_FOLDER).mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            for slug in (item for item in slugs_or_folders if isinstance(item, str)):
                drained = gates.enter_context(
                    exclusive_lock_within(home.write_gate(slug), WRITES_DRAIN_SECONDS)
                )
                if not drained:
                    raise OperationFailed(
                        f"writes to {slug} still in flight after {WRITES_DRAIN_SECONDS:g} s: "
                        "nothing was done; try again"
                    )
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
