"""The two storage backends the files, links and datasets suites run on: the local disk
and an S3 API over HTTP (moto's server, see tests/s3.py). A test looks at what a tenant
holds in an area (``blobs``, ``links``, ``incoming``) the same way on both."""

from __future__ import annotations

import os
import time

from tenantry.home.layout import TenantHome
from tenantry.storage.location import StorageLocation
from tenantry.storage.objects import tenant_storage
from tenantry.storage.s3 import ObjectStore

LOCAL_ID = "local"
S3_ID = "s3"
_FOLDERS = {"blobs": ".blobs", "links": ".links", "incoming": ".incoming"}


class LocalBackend:
    """Bytes under ``tenants/<slug>/storage/``."""

    name = LOCAL_ID

    def names(self, home: TenantHome, slug: str, area: str) -> list[str]:
        folder = home.instance_dir(slug) / "storage" / _FOLDERS[area]
        return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []

    def read(self, home: TenantHome, slug: str, area: str, name: str) -> bytes:
        return (home.instance_dir(slug) / "storage" / _FOLDERS[area] / name).read_bytes()

    def size(self, home: TenantHome, slug: str, area: str, name: str) -> int:
        return (home.instance_dir(slug) / "storage" / _FOLDERS[area] / name).stat().st_size

    def total_bytes(self, home: TenantHome, slug: str) -> int:
        """Every byte the tenant's storage holds."""
        storage = home.instance_dir(slug) / "storage"
        return sum(path.stat().st_size for path in storage.rglob("*") if path.is_file())

    def uploads(self, home: TenantHome, slug: str) -> list[str]:
        """Uploads under way or left by a killed worker: temp files."""
        return self.names(home, slug, "incoming")

    def sweep_dead_uploads(self, home: TenantHome, slug: str) -> None:
        """Make the tenant's uploads look hours old, so the server's next sweep (at the
        tenant app's next build) takes them."""
        folder = home.instance_dir(slug) / "storage" / _FOLDERS["incoming"]
        for path in folder.iterdir():
            os.utime(path, (time.time() - 7 * 3600,) * 2)


class ObjectBackend:
    """Bytes under ``PREFIX/<slug>/`` of a bucket of its own; zips being built still go
    through the tenant's local folder, so ``incoming`` names both."""

    name = S3_ID

    def __init__(self, store: ObjectStore, location: StorageLocation):
        self.store = store
        self.location = location

    def _prefix(self, slug: str, area: str) -> str:
        return f"{self.location.tenant_prefix(slug)}{area}/"

    def names(self, home: TenantHome, slug: str, area: str) -> list[str]:
        prefix = self._prefix(slug, area)
        found = [info.key[len(prefix) :] for info in self.store.list(prefix)]
        if area == "incoming":
            found += LocalBackend().names(home, slug, area)
        return sorted(found)

    def read(self, home: TenantHome, slug: str, area: str, name: str) -> bytes:
        return b"".join(self.store.read(self._prefix(slug, area) + name))

    def size(self, home: TenantHome, slug: str, area: str, name: str) -> int:
        return self.store.head(self._prefix(slug, area) + name).size

    def total_bytes(self, home: TenantHome, slug: str) -> int:
        """Every byte the tenant holds: its objects and its local folder's zips."""
        stored = sum(info.size for info in self.store.list(self.location.tenant_prefix(slug)))
        return stored + LocalBackend().total_bytes(home, slug)

    def uploads(self, home: TenantHome, slug: str) -> list[str]:
        """Uploads under way or left by a killed worker: objects under ``incoming/``,
        multipart uploads never completed, and the local temp files of zips."""
        answer = self.store.client.list_multipart_uploads(
            Bucket=self.store.bucket, Prefix=self._prefix(slug, "incoming")
        )
        pending = [upload["Key"] for upload in answer.get("Uploads", ())]
        return sorted(pending + self.names(home, slug, "incoming"))

    def sweep_dead_uploads(self, home: TenantHome, slug: str) -> None:
        """The store dates an upload itself: sweep the tenant's uploads as if they were
        hours old, now (the same sweep the server runs)."""
        tenant_storage(home.instance_dir(slug) / "storage", slug).sweep_incoming(older_than=-60)
