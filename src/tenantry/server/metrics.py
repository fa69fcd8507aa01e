"""Prometheus metrics of a ``tenantry serve``, summed over every worker (docs/operators.md).

``tenantry serve --metrics-bind HOST:PORT`` makes a fresh folder for prometheus_client's
multiprocess mode and names it in ``PROMETHEUS_MULTIPROC_DIR`` before gunicorn starts, so
every worker writes its figures there from its first request; the gunicorn master serves
their sum as Prometheus text at ``http://HOST:PORT/metrics`` (and nowhere else: the
tenant routes do not change) and, when a worker exits, marks its live gauges dead
(:mod:`tenantry.server.hooks`). Without ``--metrics-bind`` nothing is counted.

The metrics are defined once per process, not once per tenant app (prometheus_client
refuses a name twice). A tenant label is given to at most ``TENANTRY_METRICS_TENANTS``
tenants (default 100) across all workers of the server, the first ones seen; the others
count as ``tenant="_other"``, so 10 000 tenants do not make 10 000 series per metric.
The histogram has no tenant label at all.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from tenantry.support.locking import file_lock

log = logging.getLogger(__name__)

MULTIPROC_ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
# Set by `tenantry serve --metrics-bind` (with MULTIPROC_ENV_VAR): counting is on only then.
BIND_ENV_VAR = "TENANTRY_METRICS_BIND"
TENANTS_ENV_VAR = "TENANTRY_METRICS_TENANTS"
DEFAULT_LABELLED_TENANTS = 100
OTHER = "_other"
# Which tenants have a label of their own: one slug per line, shared by the workers.
LABELS_FILE = "tenant-labels.txt"
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_DURATION_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600)
REJECTION_REASONS = ("concurrency", "rate", "slow", "quota", "body")


def labelled_tenants_limit() -> int:
    """TENANTRY_METRICS_TENANTS, checked. :raises ValueError: not a whole number ≥ 0."""
    value = os.environ.get(TENANTS_ENV_VAR, "").strip()
    if not value:
        return DEFAULT_LABELLED_TENANTS
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"{TENANTS_ENV_VAR} must be a whole number (got {value!r})")
    return int(value)


class Metrics:
    """The process's metrics (when the server counts them)."""

    def __init__(self, folder: Path, limit: int):
        # lazy: prometheus_client loads only under --metrics-bind
        from prometheus_client import Counter, Gauge, Histogram

        self.folder = folder
        self.limit = limit
        self._labels: dict[str, str] = {}
        self._lock = threading.Lock()
        self._complained = False
        self.requests = Counter(
            "tenantry_requests_total",
            "Requests answered, by tenant and status.",
            ["tenant", "code"],
        )
        self.duration = Histogram(
            "tenantry_request_duration_seconds",
            "Time to answer a request (all tenants).",
            buckets=DURATION_BUCKETS,
        )
        self.rejected = Counter(
            "tenantry_rejected_total",
            "Requests the per-tenant limits refused, by tenant and reason.",
            ["tenant", "reason"],
        )
        self.loaded = Gauge(
            "tenantry_loaded_apps", "Tenant apps held by the workers.", multiprocess_mode="livesum"
        )
        self.builds = Counter("tenantry_app_builds_total", "Tenant apps built.")
        self.jobs = Counter(
            "tenantry_jobs_total",
            "Job attempts ended, by tenant and outcome (succeeded, failed, cancelled, "
            "retried, lost).",
            ["tenant", "outcome"],
        )
        self.queued = Gauge(
            "tenantry_jobs_queued",
            "Jobs waiting, by tenant.",
            ["tenant"],
            multiprocess_mode="livemostrecent",
        )
        self.job_duration = Histogram(
            "tenantry_job_duration_seconds",
            "Time a job attempt ran (all tenants).",
            buckets=JOB_DURATION_BUCKETS,
        )

    def label(self, slug: str) -> str:
        """The tenant label of ``slug``: its own, or ``_other`` past the limit. Decided
        once per process and tenant, the same way in every worker (a shared file)."""
        label = self._labels.get(slug)
        if label is not None:
            return label
        with self._lock:
            label = self._labels.get(slug)
            if label is None:
                label = self._claim(slug)
                self._labels[slug] = label
        return label

    def _claim(self, slug: str) -> str:
        path = self.folder / LABELS_FILE
        with file_lock(self.folder / (LABELS_FILE + ".lock")):
            try:
                claimed = path.read_text().split()
            except FileNotFoundError:
                claimed = []
            if slug in claimed:
                return slug
            if len(claimed) >= self.limit:
                return OTHER
            with open(path, "a") as out:
                out.write(slug + "\n")
            return slug

    def request(self, slug: str, status: str, seconds: float) -> None:
        try:
            # /healthz and unknown tenants' 404s name no tenant: an empty label; a
            # request that failed before it answered was a 500
            code = status if status != "-" else "500"
            self.requests.labels(self.label(slug) if slug != "-" else "", code).inc()
            self.duration.observe(seconds)
        except Exception:  # counting must never fail a request
            self._failed()

    def rejection(self, slug: str, reason: str) -> None:
        try:
            self.rejected.labels(self.label(slug), reason).inc()
        except Exception:
            self._failed()

    def built(self) -> None:
        try:
            self.builds.inc()
        except Exception:
            self._failed()

    def set_loaded(self, count: int) -> None:
        try:
            self.loaded.set(count)
        except Exception:
            self._failed()

    def job(self, slug: str, outcome: str, seconds: float) -> None:
        try:
            self.jobs.labels(self.label(slug), outcome).inc()
            self.job_duration.observe(seconds)
        except Exception:
            self._failed()

    def set_queued(self, counts: dict[str, int]) -> None:
        """The queued jobs per tenant (tenants past the label limit summed as ``_other``)."""
        try:
            labelled: dict[str, int] = {}
            for slug, queued in counts.items():
                label = self.label(slug)
                labelled[label] = labelled.get(label, 0) + queued
            for label, queued in labelled.items():
                self.queued.labels(label).set(queued)
        except Exception:
            self._failed()

    def _failed(self) -> None:
        if not self._complained:
            self._complained = True
            log.exception("counting a metric failed (is %s still there?)", self.folder)


_metrics: Metrics | None = None
_checked = False
_setup_lock = threading.Lock()


def current() -> Metrics | None:
    """This process's metrics, or None when the server does not count them."""
    global _metrics, _checked
    if _checked:
        return _metrics
    with _setup_lock:
        if not _checked:
            folder = os.environ.get(MULTIPROC_ENV_VAR)
            if folder and os.environ.get(BIND_ENV_VAR) and Path(folder).is_dir():
                _metrics = Metrics(Path(folder), labelled_tenants_limit())
            _checked = True
    return _metrics


def exposition(folder: Path) -> bytes:
    """The Prometheus text of every worker's figures in ``folder``, summed."""
    # lazy: prometheus_client loads only under --metrics-bind
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry)
