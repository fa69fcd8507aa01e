"""What enqueueing a job can refuse. Apart from the store, so that the web layer's error
handlers (loaded before ``/healthz`` answers) need no SQLAlchemy."""

from tenantry.support.errors import PlatformError


class JobQueueFull(PlatformError):
    """The tenant already has its ``MAX_QUEUED_JOBS`` waiting; a route answers 429."""
