"""The on-disk layout of TENANTRY_HOME: the one place that knows where a tenant's files live.

A tenant is exactly ``config/<slug>.py`` plus ``tenants/<slug>/``; there is no central
registry file. Everything here works per slug, so nothing has to scan the whole folder to
answer a question about one tenant.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path

from dotenv import dotenv_values

from tenantry.config import TenantConfig, TenantConfigError, is_valid_slug
from tenantry.db import TenantDatabase

HOME_ENV_VAR = "TENANTRY_HOME"
DATABASE_URL_ENV_VAR = "TENANTRY_DATABASE_URL"

# A stat signature: (mtime in ns, size, inode), or None for a missing file. Nanoseconds and
# inode catch edits that whole-second mtimes miss and files replaced by rename.
StatSignature = tuple[int, int, int] | None


def stat_signature(path: Path) -> StatSignature:
    """The change-detection signature of ``path``; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class TenantHome:
    """Paths and files of the tenants under one TENANTRY_HOME folder.

    ``database_url`` names the PostgreSQL database whose schemas hold the tenants' data;
    None keeps each tenant's data in its own SQLite file.
    """

    def __init__(self, root: str | os.PathLike[str], database_url: str | None = None):
        self.root = Path(root).resolve()
        self.database_url = database_url or None
        self.config_dir = self.root / "config"
        self.tenants_dir = self.root / "tenants"

    @classmethod
    def from_environ(cls, root: str | os.PathLike[str] | None = None) -> TenantHome:
        """The home at ``root``, else TENANTRY_HOME, else the current directory, with
        the database TENANTRY_DATABASE_URL names."""
        root = root or os.environ.get(HOME_ENV_VAR) or os.getcwd()
        return cls(root, os.environ.get(DATABASE_URL_ENV_VAR))

    def __repr__(self) -> str:
        return f"TenantHome({str(self.root)!r})"

    def config_file(self, slug: str) -> Path:
        return self.config_dir / f"{slug}.py"

    def instance_dir(self, slug: str) -> Path:
        return self.tenants_dir / slug

    def env_file(self, slug: str) -> Path:
        return self.instance_dir(slug) / ".env"

    def disabled_marker(self, slug: str) -> Path:
        return self.instance_dir(slug) / "disabled"

    def database_file(self, slug: str) -> Path:
        return self.instance_dir(slug) / "tenant.db"

    def database(self, slug: str) -> TenantDatabase:
        """The tenant's database: its SQLite file, or its schema of ``database_url``.
        Nothing is opened until it is used; call ``dispose()`` when done."""
        return TenantDatabase(slug, self.instance_dir(slug), self.database_url)

    def exists(self, slug: str) -> bool:
        """Whether a tenant of that slug is configured (its config module exists)."""
        return is_valid_slug(slug) and self.config_file(slug).is_file()

    def slugs(self) -> list[str]:
        """Every configured tenant's slug, sorted."""
        if not self.config_dir.is_dir():
            return []
        names = (entry.name for entry in os.scandir(self.config_dir) if entry.is_file())
        return sorted(
            name[:-3] for name in names if name.endswith(".py") and is_valid_slug(name[:-3])
        )

    def is_enabled(self, slug: str) -> bool:
        return not self.disabled_marker(slug).exists()

    def fingerprint(self, slug: str) -> tuple[StatSignature, StatSignature, bool]:
        """What changes when the tenant's config, secrets or enabled state change."""
        return (
            stat_signature(self.config_file(slug)),
            stat_signature(self.env_file(slug)),
            self.disabled_marker(slug).exists(),
        )

    def load_config_class(self, slug: str) -> type[TenantConfig]:
        """Execute ``config/<slug>.py`` afresh and return its TenantConfig subclass.

        :raises TenantConfigError: the module is missing, fails to run, or does not hold
            exactly one TenantConfig subclass whose SLUG is ``slug``.
        """
        path = self.config_file(slug)
        module_name = "tenantry_tenant_config_" + slug.replace("-", "_")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None or not path.is_file():
            raise TenantConfigError(slug, [f"config/{slug}.py does not exist"])
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise TenantConfigError(
                slug, [f"config/{slug}.py failed to load: {type(exc).__name__}: {exc}"]
            ) from exc
        classes = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, TenantConfig)
            and value.__module__ == module_name
            and getattr(value, "SLUG", None) == slug
        ]
        if len(classes) != 1:
            found = "none" if not classes else f"{len(classes)}"
            raise TenantConfigError(
                slug,
                [
                    f"config/{slug}.py must define one TenantConfig subclass with "
                    f"SLUG = {slug!r} (found {found})"
                ],
            )
        return classes[0]

    def read_secrets(self, slug: str) -> dict[str, str | None]:
        """The tenant's ``.env`` as a dict, without touching ``os.environ``; {} if absent."""
        path = self.env_file(slug)
        if not path.is_file():
            return {}
        return dict(dotenv_values(path))


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` in one rename, the file created with ``mode``."""
    temp = path.with_name(f".{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
