"""Per-tenant request limits: no tenant takes more than its share of a worker, and what is
refused is counted.

Each tenant app's WSGI callable is wrapped in :class:`RequestLimits`, which, before any work:
- answers 429 at once when the tenant already has ``MAX_CONCURRENT_REQUESTS`` requests in
  flight in this worker process (not queued: the slot is for the other tenants);
- answers 429 when the tenant is over its ``RATE_LIMIT`` (the ``limits`` library: per
  process in memory, or shared by every worker and host through Redis when
  ``TENANTRY_REDIS_URL`` is set), and adds the IETF draft ``RateLimit-*`` headers to every
  response while a limit is set.

A body is first made to arrive (:mod:`tenantry.server.bodies`): a small one is read
before the request takes a slot, and one that stops arriving is a 408.

Every refusal is counted by tenant and reason in :data:`rejections` (concurrency, rate,
slow, and, seen in the responses, body for 413 and quota for 507), for the metrics to
export.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter

from tenantry.home.settings import parse_rate_limit
from tenantry.server.bodies import SLOW_BODY, IdleInput, SlowBody, read_small_body
from tenantry.server.metrics import current as current_metrics
from tenantry.support.closing import call_on_close
from tenantry.web.errors import error_response

log = logging.getLogger(__name__)

REDIS_URL_ENV_VAR = "TENANTRY_REDIS_URL"
CONCURRENCY_RETRY_AFTER = 1
# Statuses the limits below the app answer, by the reason counted.
REJECTED_STATUSES = {"413": "body", "507": "quota"}

#: Refusals in this process: (tenant slug, reason) → how many.
rejections: Counter[tuple[str, str]] = Counter()
_rejections_lock = threading.Lock()


def count_rejection(slug: str, reason: str) -> None:
    with _rejections_lock:
        rejections[(slug, reason)] += 1
    metrics = current_metrics()
    if metrics is not None:
        metrics.rejection(slug, reason)


class RateLimits:
    """The process's rate-limit storage: memory, or the Redis of TENANTRY_REDIS_URL."""

    _instance: RateLimits | None = None
    _lock = threading.Lock()

    def __init__(self, url: str):
        # lazy: the limits library loads only for a tenant with a RATE_LIMIT
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.url = url
        self.limiter = MovingWindowRateLimiter(storage_from_string(url))

    @classmethod
    def shared(cls) -> RateLimits:
        url = os.environ.get(REDIS_URL_ENV_VAR) or "memory://"
        with cls._lock:
            if cls._instance is None or cls._instance.url != url:
                cls._instance = cls(url)
            return cls._instance


class RequestLimits:
    """WSGI middleware around one tenant app: concurrency and rate limits, before any work."""

    def __init__(
        self,
        app,
        slug: str,
        max_concurrent: int,
        rate_limit: str | None,
        small_body: int = 1024 * 1024,
    ):
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.app = app
        self.small_body = small_body  # bodies up to this are read before taking a slot
        self.slug = slug
        self.max_concurrent = max_concurrent
        self.rate = parse_rate_limit(rate_limit) if rate_limit else None
        self.in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING"):
            # A body that does not arrive must not hold one of the tenant's slots.
            try:
                if not read_small_body(environ, self.small_body):
                    environ["wsgi.input"] = IdleInput(environ["wsgi.input"])
            except SlowBody:
                count_rejection(self.slug, "slow")
                return error_response(408, SLOW_BODY)(environ, start_response)
        with self._lock:
            if self.in_flight >= self.max_concurrent:
                refused = True
            else:
                refused = False
                self.in_flight += 1
        if refused:
            count_rejection(self.slug, "concurrency")
            message = "This tenant has too many requests in progress; try again shortly."
            headers = [("Retry-After", str(CONCURRENCY_RETRY_AFTER))]
            return error_response(429, message, headers)(environ, start_response)
        try:
            rate_headers = self._rate_headers()
            if rate_headers is not None and rate_headers[0] is False:
                self._leave()
                count_rejection(self.slug, "rate")
                message = "This tenant is over its rate limit; see Retry-After."
                return error_response(429, message, rate_headers[1])(environ, start_response)

            def start(status, headers, exc_info=None):
                reason = REJECTED_STATUSES.get(status[:3])
                if reason is not None:
                    count_rejection(self.slug, reason)
                if rate_headers is not None:
                    headers.extend(rate_headers[1])
                return start_response(status, headers, exc_info)

            body = self.app(environ, start)
        except BaseException:
            self._leave()
            raise
        return call_on_close(body, self._leave, environ)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _rate_headers(self) -> tuple[bool, list[tuple[str, str]]] | None:
        """Whether the request is within the tenant's rate limit, and the RateLimit headers
        to send; None without a limit. A limit store that fails lets the request through."""
        if self.rate is None:
            return None
        limiter = RateLimits.shared().limiter
        try:
            allowed = limiter.hit(self.rate, "tenantry", self.slug)
            reset, remaining = limiter.get_window_stats(self.rate, "tenantry", self.slug)
        except Exception:
            log.exception("the rate limit store failed: letting the request through")
            return None
        seconds = max(1, math.ceil(reset - time.time()))
        window = self.rate.get_expiry()
        headers = [
            ("RateLimit-Limit", str(self.rate.amount)),
            ("RateLimit-Remaining", str(max(0, remaining))),
            ("RateLimit-Reset", str(seconds)),
            ("RateLimit-Policy", f"{self.rate.amount};w={window}"),
        ]
        if not allowed:
            headers.append(("Retry-After", str(seconds)))
        return allowed, headers
