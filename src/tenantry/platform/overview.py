"""The tenants as the platform API and the console list them: each tenant's description
(name, hosts, state) and figures (users, bytes, quota, last activity), fast enough for a
page of a home with thousands of tenants.

A description is read again when the tenant's files change (their stat signatures, one
``stat`` each). Figures cost a database's queries (about 4 ms a tenant on SQLite), so a
page never waits for them but the first time a tenant is shown: while the console is in
use (a page was served by any process of the home in the last :data:`IDLE_SECONDS`), a
thread of each process serving it reads every tenant's figures, and again those older
than :data:`FIGURES_SECONDS`, one tenant at a time (yielding between them, so a gevent
worker's requests go on). A page
shows what was last read; a tenant page, and the row of a tenant changed here, read now.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from tenantry.home.layout import LOCKS_FOLDER, TenantHome, stat_signature
from tenantry.ops.lifecycle import describe_tenant
from tenantry.ops.stats import tenant_stats
from tenantry.support.atomic import PRIVATE_DIR

log = logging.getLogger(__name__)

FIGURES_SECONDS = 30.0
IDLE_SECONDS = 600.0
# A row: what describing the tenant gives, then what its figures give.
DESCRIBED_FIELDS = ("slug", "name", "enabled", "maintenance", "blueprints", "hosts")
FIGURE_FIELDS = ("users", "bytes", "quota", "last_activity")


class Overview:
    """One per process: descriptions and figures of ``home``'s tenants, cached."""

    def __init__(self, home: TenantHome):
        self.home = home
        self._described: dict[str, tuple[object, dict]] = {}
        self._figures: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()
        self.marker = home.tenants_dir / LOCKS_FOLDER / "console-in-use"
        self._touched = 0.0

    def describe(self, slug: str) -> dict:
        # the maintenance marker too: a description says whether the tenant is down
        signature = (
            self.home.fingerprint(slug),
            stat_signature(self.home.maintenance_marker(slug)),
        )
        with self._lock:
            cached = self._described.get(slug)
        if cached is not None and cached[0] == signature:
            return cached[1]
        described = describe_tenant(self.home, slug)
        with self._lock:
            self._described[slug] = (signature, described)
        return described

    def figures(self, slug: str, fresh: bool = False) -> dict:
        """The tenant's figures as last read (read now if never, or if ``fresh``)."""
        with self._lock:
            cached = self._figures.get(slug)
        if not fresh and cached is not None:
            return cached[1]
        return self._read_figures(slug)

    def _read_figures(self, slug: str) -> dict:
        now = time.monotonic()
        stats = tenant_stats(self.home, slug)
        with self._lock:
            self._figures[slug] = (now, stats)
        return stats

    def _in_use(self) -> None:
        """Say the console is in use: every process serving it reads figures while it is
        (a marker file's time, touched at most every few seconds)."""
        now = time.time()
        if now - self._touched < 5:
            return
        self._touched = now
        with contextlib.suppress(OSError):
            self.marker.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            self.marker.touch()

    def start(self) -> None:
        """Start this process's thread that reads the figures while the console is in use
        (in any process of the home: the marker says)."""
        threading.Thread(target=self._refresh, name="tenantry-overview", daemon=True).start()

    def _used_lately(self) -> bool:
        try:
            return time.time() - self.marker.stat().st_mtime < IDLE_SECONDS
        except OSError:
            return False

    def _refresh(self) -> None:
        while True:
            time.sleep(1.0)
            if not self._used_lately():
                continue
            for slug in self.home.slugs():
                with contextlib.suppress(Exception):  # a search reads every description
                    self.describe(slug)
                with self._lock:
                    cached = self._figures.get(slug)
                if cached is None or time.monotonic() - cached[0] >= FIGURES_SECONDS:
                    try:
                        self._read_figures(slug)
                    except Exception:  # one tenant's failure stops no other's
                        log.exception("the figures of %s could not be read", slug)
                    time.sleep(0.002)  # yield: the worker's requests go first

    def forget(self, slug: str) -> None:
        """After a change made here: the next read is fresh."""
        with self._lock:
            self._described.pop(slug, None)
            self._figures.pop(slug, None)

    def page(self, search: str = "", limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
        """The rows of the tenants whose slug, name or host holds ``search`` (any case),
        by slug, ``limit`` from ``offset``; and how many match in all."""
        self._in_use()
        slugs = self.home.slugs()
        with self._lock:  # tenants deleted meanwhile (by another process) are forgotten
            for gone in set(self._described) - set(slugs):
                self._described.pop(gone, None)
                self._figures.pop(gone, None)
        needle = search.strip().lower()
        if needle:
            slugs = [slug for slug in slugs if _matches(self.describe(slug), needle)]
        return [self.row(slug) for slug in slugs[offset : offset + limit]], len(slugs)

    def row(self, slug: str, fresh: bool = False) -> dict:
        described, figures = self.describe(slug), self.figures(slug, fresh)
        row = {key: described.get(key) for key in DESCRIBED_FIELDS}
        row |= {key: figures.get(key) for key in FIGURE_FIELDS}
        error = described.get("error") or figures.get("error")
        return row | ({"error": error} if error else {})


def _matches(described: dict, needle: str) -> bool:
    haystack = [described["slug"], described.get("name") or "", *described.get("hosts", ())]
    return any(needle in text.lower() for text in haystack)
