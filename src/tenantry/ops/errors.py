"""How a tenant operation fails: refused before anything was written (exit 2), or failed
with no tenant changed (exit 1)."""

from __future__ import annotations

from tenantry.support.errors import InputRefused, PlatformError


class TenantError(InputRefused):
    """A tenant operation was refused; nothing was written."""


class UnknownTenant(TenantError):
    def __init__(self, slug: str):
        super().__init__(f"no tenant named {slug!r}")


class TenantExists(TenantError):
    def __init__(self, slug: str):
        super().__init__(f"tenant {slug!r} already exists")


class OperationFailed(PlatformError):
    """A backup, verify, restore, clone or delete failed (a bad archive, a failing write);
    no tenant was changed."""


class OperationRefused(TenantError):
    """The operation was refused before anything was written (exit 2)."""


def failure_reason(exc: Exception) -> str:
    """What went wrong, in one line, without the statement or its values."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}"[:300]
