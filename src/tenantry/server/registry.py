"""TenantRegistry: which tenants exist, and their apps, built lazily and kept fresh.

Nothing is loaded up front. The first request for a tenant builds its app (once per process,
however many threads ask at the same moment). After that, at most once per
``check_interval`` seconds, the registry compares the tenant's fingerprint (nanosecond mtime,
size and inode of its config module and .env, and its disabled marker) with the one it was
built from, and rebuilds on any change. That is how every gunicorn worker picks up
``tenants create/disable/enable/rotate-secret`` and hand edits without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from tenantry.config import TenantConfigError, is_valid_slug
from tenantry.home.hosts import HostIndex, normalised_hosts
from tenantry.home.layout import MARKER_RECHECK_SECONDS, HomeError, TenantHome
from tenantry.home.loader import load_config_class
from tenantry.server.metrics import current as current_metrics
from tenantry.support.atomic import PRIVATE_DIR
from tenantry.support.errors import PlatformError
from tenantry.support.locking import file_lock_if_free

log = logging.getLogger(__name__)

DEFAULT_MAX_LOADED_APPS = 500
DEFAULT_CHECK_INTERVAL = MARKER_RECHECK_SECONDS
# With check_interval 0 (tests), hosts are still looked for only this often.
MIN_WATCH_INTERVAL = 0.05
# The server removes expired snapshots and zips this often (well within the design rules'
# 10 minutes); TENANTRY_SWEEP_INTERVAL changes it.
DEFAULT_SWEEP_INTERVAL = 300.0
SWEEP_LOCK = ".sweep.lock"


class PlatformUnavailable(PlatformError):
    """tenantry's own modules cannot be imported: no tenant app can be built."""


@dataclass
class LoadedTenant:
    """A tenant as this process last saw it: its app, or why it cannot start."""

    slug: str
    fingerprint: tuple
    checked_at: float
    enabled: bool
    hosts: tuple[str, ...] = ()
    app: Flask | None = None
    error: str | None = None
    key_digest: str | None = None
    # Refused for a SECRET_KEY another loaded tenant has: re-checked even if unchanged.
    shares_key: bool = False
    # Retry-After seconds while the tenant is down for maintenance (None: up), read at each
    # re-check. A tenant down is not built (its database is not opened, let alone created
    # or migrated, while an operator works on it); coming up builds it.
    maintenance: int | None = None
    # A backup or restore holds its writes (503 with Retry-After; reads go on), read at
    # each re-check.
    writes_held: bool = False
    # The platform's own modules could not be imported (an install broken or half-done):
    # tried again at the next re-check, not kept until the tenant's files change.
    retry: bool = False

    def release(self) -> None:
        """Let go of the app's database connections."""
        if self.app is not None:
            self.app.extensions["tenantry.db"].dispose()


class TenantRegistry:
    """Discovers tenants in a :class:`TenantHome` and hands out their apps."""

    def __init__(
        self,
        home: TenantHome,
        max_loaded: int = DEFAULT_MAX_LOADED_APPS,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        sweep_interval: float = 0,
    ):
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self.home = home
        self.max_loaded = max_loaded
        self.check_interval = check_interval
        # Seconds between clean-ups of expired snapshots and dead uploads (0: none).
        self.sweep_interval = sweep_interval
        self._gates_ready = False
        self.builds = 0
        self._loaded: OrderedDict[str, LoadedTenant] = OrderedDict()
        self._lock = threading.Lock()
        self._slug_locks: dict[str, threading.Lock] = {}
        self._key_holders: dict[str, set[str]] = {}
        self._hosts = HostIndex(home)
        self._host_watcher: threading.Thread | None = None
        # Why the platform's modules could not be imported, for /healthz (None: fine)
        self.platform_error: str | None = None
        self._stopped = threading.Event()

    def lookup(self, slug: str, fresh: bool = False) -> LoadedTenant | None:
        """The tenant of that slug, built if needed; None if unknown or disabled. Its
        files are looked at again when last looked at over ``check_interval`` ago, or
        now with ``fresh`` (a write: a restore may have replaced its database).

        A tenant that cannot start comes back with ``app`` None and ``error`` set.
        """
        entry = self._loaded.get(slug)
        recent = entry is not None and time.monotonic() - entry.checked_at < self.check_interval
        if recent and not fresh:
            self._touch(slug)
            return entry if entry.enabled else None
        if not is_valid_slug(slug) or (entry is None and not self.home.config_file(slug).is_file()):
            return None  # unknown: nothing is kept for it, not even a lock
        with self._slug_lock(slug):
            entry = self._refresh(slug)
        return entry if entry is not None and entry.enabled else None

    def write_gate(self, slug: str) -> Path:
        """The tenant's write gate (:meth:`tenantry.home.layout.TenantHome.write_gate`)."""
        if self._gates_ready is False:
            self.home.write_gate(slug).parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            self._gates_ready = True
        return self.home.write_gate(slug)

    def slug_for_host(self, host: str) -> str | None:
        """The tenant whose HOSTS include ``host`` (lower case, no port), if any.

        Requests only read the host index: it is kept fresh by a background thread (one
        per registry, started here on first use), so no request, whatever Host it sends,
        runs or even lists the config modules.
        """
        if self._host_watcher is None:
            self._start_host_watcher()
        slug = self._hosts.by_host.get(host)
        if slug is None:
            return None
        entry = self.lookup(slug)
        if entry is not None and entry.app is not None and host not in entry.hosts:
            return None  # its config dropped the host; the index will follow
        return slug  # a disabled tenant's host answers its 404, a broken one its 503

    def _start_host_watcher(self) -> None:
        with self._lock:
            if self._host_watcher is not None:
                return
            self._hosts.refresh()
            interval = self.check_interval if self.check_interval > 0 else MIN_WATCH_INTERVAL
            watcher = threading.Thread(
                target=self._watch_hosts, args=(interval,), name="tenantry-hosts", daemon=True
            )
            watcher.start()
            self._host_watcher = watcher
            if self.sweep_interval:
                threading.Thread(target=self._sweep, name="tenantry-sweep", daemon=True).start()

    def _sweep(self) -> None:
        """Every ``sweep_interval`` seconds, one process of those serving this home (the
        one that gets the lock) runs every tenant's clean-up that has anything to clean."""
        lock_path = self.home.tenants_dir / SWEEP_LOCK
        while not self._stopped.wait(self.sweep_interval):
            try:
                # lazy: the sweeper's code loads at the first sweep, not at start-up
                from tenantry.ops.gc import collect_garbage, needs_sweeping, remove_leftovers

                with file_lock_if_free(lock_path) as mine:
                    if mine:
                        remove_leftovers(self.home)  # what killed restores left aside
                    for slug in self.home.slugs() if mine else ():  # else another is on it
                        if not self._stopped.is_set() and needs_sweeping(self.home, slug):
                            collect_garbage(self.home, [slug])
            except Exception:
                log.exception("sweeping the tenants' storage failed")

    def _watch_hosts(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                self._hosts.refresh()
            except Exception:
                log.exception("refreshing the host index failed")

    def loaded_slugs(self) -> list[str]:
        """Slugs of the tenants this process holds, least recently used first."""
        return list(self._loaded)

    def close(self) -> None:
        """Release every loaded tenant, and stop watching for host changes."""
        self._stopped.set()
        with self._lock:
            while self._loaded:
                self._forget(self._loaded.popitem()[1])
            self._count_loaded()

    def _slug_lock(self, slug: str) -> threading.Lock:
        with self._lock:
            return self._slug_locks.setdefault(slug, threading.Lock())

    def _touch(self, slug: str) -> None:
        # Another thread may have evicted it meanwhile; the caller's entry stays usable.
        with contextlib.suppress(KeyError):
            self._loaded.move_to_end(slug)

    def _refresh(self, slug: str) -> LoadedTenant | None:
        """Re-check one tenant's files and rebuild it if they changed (slug lock held)."""
        now = time.monotonic()
        fingerprint = self.home.fingerprint(slug)
        maintenance = self.home.maintenance(slug)
        entry = self._loaded.get(slug)
        if (
            entry is not None
            and entry.fingerprint == fingerprint
            and not entry.shares_key
            and not entry.retry
            and (entry.maintenance is None) == (maintenance is None)
        ):
            entry.checked_at = now
            entry.maintenance = maintenance
            entry.writes_held = self.home.writes_held(slug)
            self._touch(slug)
            return entry
        if entry is not None:
            with self._lock:
                self._loaded.pop(slug, None)
                self._forget(entry)
                self._count_loaded()
        config_signature, _, disabled = fingerprint
        if config_signature is None:
            return None
        if disabled:
            entry = LoadedTenant(slug, fingerprint, now, enabled=False)
        elif maintenance is not None:
            entry = LoadedTenant(slug, fingerprint, now, enabled=True)  # not built while down
        else:
            entry = self._build(slug, fingerprint, now)
        entry.maintenance = maintenance
        entry.writes_held = self.home.writes_held(slug)
        with self._lock:
            if entry.app is not None:
                self._claim_key(entry)
            self._loaded[slug] = entry
            while len(self._loaded) > self.max_loaded:
                self._forget(self._loaded.popitem(last=False)[1])
            self._count_loaded()
        return entry

    def _claim_key(self, entry: LoadedTenant) -> None:
        """Refuse a tenant whose SECRET_KEY another loaded tenant has, and that one too:
        a shared key would let each mint the other's tokens (lock held)."""
        digest = hashlib.sha256(entry.app.config["SECRET_KEY"].encode()).hexdigest()
        entry.key_digest = digest
        holders = self._key_holders.setdefault(digest, set())
        for slug in list(holders):
            holder = self._loaded.get(slug)
            if holder is not None and holder.fingerprint != self.home.fingerprint(slug):
                # Its files changed since it was loaded (e.g. rotated): its key no longer counts.
                del self._loaded[slug]
                self._forget(holder)
        holders = self._key_holders.setdefault(digest, set())
        holders.add(entry.slug)
        if len(holders) == 1:
            return
        log.error("tenants %s share a SECRET_KEY: refusing them", ", ".join(sorted(holders)))
        entry.release()
        entry.app = None
        entry.error = "SECRET_KEY is shared with another tenant"
        for slug in holders:
            holder = self._loaded.get(slug)
            if holder is not None:
                holder.shares_key = True
                holder.checked_at = float("-inf")
        entry.shares_key = True

    def _count_loaded(self) -> None:
        """Tell the metrics how many apps this process holds (lock held)."""
        metrics = current_metrics()
        if metrics is not None:
            metrics.set_loaded(sum(1 for entry in self._loaded.values() if entry.app is not None))

    def _forget(self, entry: LoadedTenant) -> None:
        """Release a tenant leaving the cache (lock held)."""
        entry.release()
        holders = self._key_holders.get(entry.key_digest)
        if holders is not None:
            holders.discard(entry.slug)
            if not holders:
                del self._key_holders[entry.key_digest]

    def _build(self, slug: str, fingerprint: tuple, now: float) -> LoadedTenant:
        self.builds += 1
        metrics = current_metrics()
        if metrics is not None:
            metrics.built()
        entry = LoadedTenant(slug, fingerprint, now, enabled=True)
        try:
            # A tenant made on another backend since this server started (the record is
            # written by the first create) must not get a database here too. The record
            # alone: a home without one was judged by its tenants' files at start.
            self.home.check_backend(infer=False)
            create_app = self._create_app()
            config_class = load_config_class(self.home, slug)
            entry.hosts = normalised_hosts(config_class.HOSTS)
            entry.app = create_app(config_class, self.home)
        except HomeError as exc:
            log.error("tenant %s cannot start: %s", slug, exc, extra={"tenant": slug})
            entry.error = str(exc)
        except TenantConfigError as exc:
            problems = "; ".join(exc.problems)
            log.error("tenant %s cannot start: %s", slug, problems, extra={"tenant": slug})
            entry.error = "; ".join(exc.problems)
        except PlatformUnavailable as exc:
            entry.error = str(exc)
            entry.retry = True
        except Exception as exc:
            log.exception("tenant %s failed to start", slug, extra={"tenant": slug})
            entry.error = f"failed to start: {type(exc).__name__}"
        return entry

    def _create_app(self):
        """The app factory, imported when the first tenant app builds (SQLAlchemy, the
        auth layer and the rest are not needed for /healthz). An import that fails is the
        whole server's problem, not a tenant's: it is logged, /healthz answers 503 until an
        import succeeds, and each tenant tries again at its next re-check.

        :raises PlatformUnavailable:
        """
        try:
            # lazy: /healthz answers before Flask apps, SQLAlchemy and auth load (test_start.py)
            from tenantry.server.factory import create_app
        except Exception as exc:
            self.platform_error = f"{type(exc).__name__}: {exc}"
            log.exception("tenantry's own modules cannot be imported: every tenant answers 503")
            raise PlatformUnavailable("the server cannot load its platform modules") from exc
        self.platform_error = None
        return create_app
