"""The base every tenant's config class extends: :class:`TenantConfig` and its defaults.

This module imports nothing else of tenantry but :mod:`tenantry.support`, so that a
tenant's ``config/<slug>.py`` loads in a moment; the rules a tenant's settings must meet
are in :mod:`tenantry.home.settings`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType

from tenantry.support.errors import PlatformError

SLUG_PATTERN = re.compile(r"[a-z][a-z0-9-]{1,62}")
RESERVED_SLUGS = frozenset({"healthz"})

# The built-in endpoint modules a tenant enables by default, in their usual order.
ALL_BLUEPRINTS = ("landing", "status", "auth", "files", "datasets")

MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT_CHARS = 10
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "dev",
        "development",
        "secret",
        "secret-key",
        "secret_key",
        "super-secret",
        "super-secret-key",
        "supersecretkey",
        "your-secret-key",
        "your_secret_key",
        "your-secret-key-here",
        "please-change-this-secret-key-in-production",
        "replace-me-with-a-real-secret-key-of-32-bytes",
    }
)

MiB = 1024**2
GiB = 1024**3


class TenantConfigError(PlatformError):
    """A tenant's config class or secrets are invalid; ``problems`` lists each one."""

    def __init__(self, slug: str, problems: list[str]):
        self.slug = slug
        self.problems = problems
        super().__init__(f"tenant {slug!r}: " + "; ".join(problems))


class TenantConfig:
    """Defaults for every tenant. Subclass it in ``config/<slug>.py`` and set SLUG."""

    SLUG: str = ""
    NAME: str = ""
    HOSTS: tuple[str, ...] = ()
    BLUEPRINTS: tuple[str, ...] = ALL_BLUEPRINTS

    MAX_CONTENT_LENGTH: int = 1 * GiB  # raw file uploads
    MAX_JSON_BODY: int = 1 * MiB  # every JSON request body
    MAX_CONCURRENT_REQUESTS: int = 4  # in flight at once in one worker process
    RATE_LIMIT: str | None = None  # e.g. "600/minute", for the whole tenant
    STORAGE_QUOTA: int = 10 * GiB
    JWT_ACCESS_LIFESPAN: timedelta = timedelta(minutes=15)
    JWT_REFRESH_LIFESPAN: timedelta = timedelta(days=30)
    LOGIN_MAX_FAILURES: int = 10
    LOGIN_LOCKOUT: timedelta = timedelta(minutes=5)
    # Refuse (503) routes of endpoint modules that do not declare their OpenAPI operations,
    # rather than serve them with their path and methods only.
    OPENAPI_STRICT: bool = False
    MAX_RUNNING_JOBS: int = 2  # the tenant's jobs running at once, across every host
    MAX_QUEUED_JOBS: int = 1000  # waiting at once; one more is refused (JobQueueFull)
    JOBS_KEEP_DAYS: int = 7  # finished jobs are shown this long, then removed
    # Per schedule, "<module>.<name>": None turns it off, {"every": N} or {"cron": "M H D M W"}
    # changes when it runs.
    SCHEDULES: Mapping[str, object] = MappingProxyType({})
    BACKUP_EVERY: int | None = None  # seconds between scheduled backups (None: none)
    BACKUP_KEEP: int = 7  # scheduled backups kept; older ones are removed

    DEBUG = False
    TESTING = False
    PROPAGATE_EXCEPTIONS = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"


def is_valid_slug(slug: str) -> bool:
    """Whether ``slug`` may name a tenant (it matches the slug pattern and is not reserved)."""
    return SLUG_PATTERN.fullmatch(slug) is not None and slug not in RESERVED_SLUGS
