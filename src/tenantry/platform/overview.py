"""The tenants as the platform API and the console list them: each tenant's description
(name, hosts, state) and figures (users, bytes, quota, last activity), fast enough for a
page of a home with thousands of tenants.

A description is read again when the tenant's files change (their stat signatures, one
``stat`` each); figures, which cost a database's queries, are kept :data:`FIGURES_SECONDS`
and read again for the tenants a page shows. So a page costs the stats of the home's
folders, and the database reads of at most one page of tenants whose figures are older.
"""

from __future__ import annotations

import threading
import time

from tenantry.home.layout import TenantHome
from tenantry.ops.lifecycle import describe_tenant
from tenantry.ops.stats import tenant_stats

FIGURES_SECONDS = 30.0
ROW_FIELDS = (
    "slug",
    "name",
    "enabled",
    "maintenance",
    "blueprints",
    "hosts",
    "users",
    "bytes",
    "quota",
    "last_activity",
)


class Overview:
    """One per process: descriptions and figures of ``home``'s tenants, cached."""

    def __init__(self, home: TenantHome):
        self.home = home
        self._described: dict[str, tuple[object, dict]] = {}
        self._figures: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def describe(self, slug: str) -> dict:
        signature = self.home.fingerprint(slug)
        with self._lock:
            cached = self._described.get(slug)
        if cached is not None and cached[0] == signature:
            return cached[1]
        described = describe_tenant(self.home, slug)
        with self._lock:
            self._described[slug] = (signature, described)
        return described

    def figures(self, slug: str, fresh: bool = False) -> dict:
        now = time.monotonic()
        with self._lock:
            cached = self._figures.get(slug)
        if not fresh and cached is not None and now - cached[0] < FIGURES_SECONDS:
            return cached[1]
        stats = tenant_stats(self.home, slug)
        with self._lock:
            self._figures[slug] = (now, stats)
        return stats

    def forget(self, slug: str) -> None:
        """After a change made here: the next read is fresh."""
        with self._lock:
            self._described.pop(slug, None)
            self._figures.pop(slug, None)

    def page(self, search: str = "", limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
        """The rows of the tenants whose slug, name or host holds ``search`` (any case),
        by slug, ``limit`` from ``offset``; and how many match in all."""
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
        row = {**described, **{key: figures.get(key) for key in ROW_FIELDS[6:]}}
        if "error" in figures and "error" not in row:
            row["error"] = figures["error"]
        return {key: row.get(key) for key in ROW_FIELDS} | (
            {"error": row["error"]} if "error" in row else {}
        )


def _matches(described: dict, needle: str) -> bool:
    haystack = [described["slug"], described.get("name") or "", *described.get("hosts", ())]
    return any(needle in text.lower() for text in haystack)
