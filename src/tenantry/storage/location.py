"""Where a home keeps its tenants' files: ``TENANTRY_STORAGE_URL`` (``s3://BUCKET/PREFIX``),
parsed without importing any S3 code, so that ``/healthz`` answers before that code loads."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

STORAGE_URL_ENV_VAR = "TENANTRY_STORAGE_URL"
# A bucket name as S3 allows it (3-63 of lower-case letters, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StorageLocation:
    """Where tenants' objects live: a bucket and a key prefix (no leading or trailing /)."""

    bucket: str
    prefix: str

    def tenant_prefix(self, slug: str) -> str:
        return f"{self.prefix}/{slug}/" if self.prefix else f"{slug}/"


def parse_storage_url(url: str | None) -> StorageLocation | None:
    """``s3://BUCKET/PREFIX`` as a :class:`StorageLocation`; None when unset (local disk).

    :raises ValueError: naming the variable and what is wrong, never echoing a secret.
    """
    if url is None or not url.strip():
        return None
    scheme, separator, rest = url.strip().partition("://")
    if scheme != "s3" or not separator:
        raise ValueError(f"{STORAGE_URL_ENV_VAR} must be s3://BUCKET/PREFIX (or unset)")
    bucket, _, prefix = rest.partition("/")
    # The value is not repeated: a mistyped URL may hold a credential.
    if _BUCKET.fullmatch(bucket) is None or ".." in bucket:
        raise ValueError(
            f"{STORAGE_URL_ENV_VAR}: the bucket must be 3-63 lower-case letters, digits, "
            "'.' and '-'"
        )
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(_PREFIX_PART.fullmatch(part) is None or part in (".", "..") for part in parts):
        raise ValueError(
            f"{STORAGE_URL_ENV_VAR}: the prefix must be folders named with letters, digits, "
            "'.', '_' and '-' (not . or ..)"
        )
    return StorageLocation(bucket, prefix)


def storage_location_from_environ() -> StorageLocation | None:
    """TENANTRY_STORAGE_URL, parsed. :raises ValueError:"""
    return parse_storage_url(os.environ.get(STORAGE_URL_ENV_VAR))
