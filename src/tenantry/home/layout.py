"""The on-disk layout of TENANTRY_HOME: :class:`TenantHome` names where a tenant's files live.

A tenant is exactly ``config/<slug>.py`` plus ``tenants/<slug>/``; there is no central
registry file. Everything here works per slug, so nothing has to scan the whole folder to
answer a question about one tenant. What the files hold is read elsewhere: the config
module by :mod:`tenantry.home.loader`, the secrets by :mod:`tenantry.home.env`, the
database by :func:`tenantry.data.db.tenant_database`.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from tenantry.config import is_valid_slug
from tenantry.storage.location import STORAGE_URL_ENV_VAR, storage_location_from_environ
from tenantry.support.errors import InputRefused

log = logging.getLogger(__name__)

HOME_ENV_VAR = "TENANTRY_HOME"
DATABASE_URL_ENV_VAR = "TENANTRY_DATABASE_URL"
# Which backend the home's tenants keep their data in: "sqlite", or the PostgreSQL URL
# without its password. Written by the first command that creates a tenant.
BACKEND_FILE = ".backend"
SQLITE = "sqlite"
# Where the home's tenants keep their files: "local", or s3://BUCKET/PREFIX. Written with
# the backend record; a host whose TENANTRY_STORAGE_URL disagrees must not serve them.
STORAGE_FILE = ".storage"
LOCAL_STORAGE = "local"
# Seconds a tenant down for maintenance tells clients to wait, unless told otherwise.
DEFAULT_RETRY_AFTER = 300
# While a backup (or a restore over the tenant) runs, its writes are held: the operation
# touches the marker every WRITES_HELD_HEARTBEAT seconds, and a marker older than
# WRITES_HELD_STALE (its process was killed) no longer holds anything.
WRITES_HELD_HEARTBEAT = 2.0
# How often a worker re-reads a tenant's markers (its files, disabled, down, writes held):
# a hold is seen by every worker's next request once this long has passed.
MARKER_RECHECK_SECONDS = 1.0
WRITES_HELD_STALE = 10.0
WRITES_HELD_RETRY_AFTER = 10
# Where the per-tenant lock files are: the operation locks, and the write gates.
LOCKS_FOLDER = ".locks"
HOME_HINT = f"point --home (or {HOME_ENV_VAR}) at the folder that holds config/ and tenants/"


class HomeError(InputRefused):
    """The home cannot be used as it is: the message says why and what to do."""


def describe_backend(database_url: str | None) -> str:
    """How a home records its backend: ``sqlite``, or the URL with no password (neither
    its own nor a ``?password=`` parameter).

    :raises HomeError: the URL cannot be read (the message does not repeat it).
    """
    if not database_url:
        return SQLITE
    # lazy: /healthz answers before SQLAlchemy loads (tests/test_start.py)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
        url = url.difference_update_query([key for key in url.query if key.lower() == "password"])
        # URL.set(password=None) would keep the password: None there means "unchanged"
        return url._replace(password=None).render_as_string(hide_password=False)
    except (ArgumentError, ValueError):
        raise HomeError(f"{DATABASE_URL_ENV_VAR} is not a database URL that can be read") from None


def describe_storage() -> str:
    """How a home records where its files are: ``local``, or ``s3://BUCKET/PREFIX`` (the
    endpoint may differ from host to host; the bucket and prefix may not).

    :raises HomeError: TENANTRY_STORAGE_URL is malformed.
    """
    try:
        location = storage_location_from_environ()
    except ValueError as exc:
        raise HomeError(str(exc)) from None
    if location is None:
        return LOCAL_STORAGE
    return f"s3://{location.bucket}/{location.prefix}".rstrip("/")


def _same_database(recorded: str, database_url: str | None) -> bool:
    if recorded == SQLITE or not database_url:
        return recorded == describe_backend(database_url)
    # lazy: /healthz answers before SQLAlchemy loads (tests/test_start.py)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    def identity(url):
        return (url.get_backend_name(), url.username, url.host, url.port or 5432, url.database)

    try:
        return identity(make_url(recorded)) == identity(make_url(database_url))
    except (ArgumentError, ValueError):  # a record edited into nonsense
        return False


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

    def maintenance_marker(self, slug: str) -> Path:
        return self.instance_dir(slug) / "maintenance"

    def maintenance(self, slug: str) -> int | None:
        """Seconds of ``Retry-After`` while the tenant is down for maintenance; None when
        it is up. A marker that does not hold a whole number means the default 300."""
        try:
            text = self.maintenance_marker(slug).read_text().strip()
        except FileNotFoundError:
            return None
        except OSError:
            return DEFAULT_RETRY_AFTER
        return (
            int(text)
            if text.isascii() and text.isdigit() and int(text) > 0
            else DEFAULT_RETRY_AFTER
        )

    def writes_held_marker(self, slug: str) -> Path:
        return self.instance_dir(slug) / "writes-held"

    def writes_held(self, slug: str) -> bool:
        """Whether a backup or restore holds the tenant's writes now (one stat)."""
        try:
            touched = os.stat(self.writes_held_marker(slug)).st_mtime
        except OSError:
            return False
        return time.time() - touched < WRITES_HELD_STALE

    def write_gate(self, slug: str) -> Path:
        """The lock file every write request of the tenant holds shared while it runs, and
        a backup, restore or delete holds exclusive while it works (beside the tenant's
        folder, which a restore swaps)."""
        return self.tenants_dir / LOCKS_FOLDER / f"{slug}.writes"

    def database_file(self, slug: str) -> Path:
        return self.instance_dir(slug) / "tenant.db"

    @property
    def backend_file(self) -> Path:
        return self.tenants_dir / BACKEND_FILE

    def recorded_backend(self, infer: bool = True) -> str | None:
        """The backend the home's tenants use: its record, else (a home made before the
        record; not with ``infer`` False) what its tenants show: a ``tenant.db`` means
        SQLite, tenants without one mean PostgreSQL (``"postgresql"``, any URL). None for
        a home without tenants."""
        try:
            return self.backend_file.read_text().strip() or None
        except FileNotFoundError:
            if not infer:
                return None
        slugs = [slug for slug in self.slugs() if self.instance_dir(slug).is_dir()]
        if any(self.database_file(slug).exists() for slug in slugs):
            return SQLITE
        return "postgresql" if slugs else None

    def check_backend(self, infer: bool = True) -> None:
        """:raises HomeError: TENANTRY_DATABASE_URL disagrees with the home's backend, or
        cannot be read; or TENANTRY_STORAGE_URL with its storage (:meth:`check_storage`).
        ``infer`` False checks the records alone (no look at every tenant's files: what a
        server does at each build, having checked it all at start)."""
        describe_backend(self.database_url)  # a URL that cannot be read is refused first
        self.check_storage(infer)
        recorded = self.recorded_backend(infer)
        if recorded is None:
            return
        if recorded == "postgresql":  # inferred: any PostgreSQL database will do
            matches = self.database_url is not None
        else:
            matches = _same_database(recorded, self.database_url)
        if not matches:
            if recorded == SQLITE:
                fix = f"unset {DATABASE_URL_ENV_VAR}"
            elif recorded == "postgresql":
                fix = f"set {DATABASE_URL_ENV_VAR} to the PostgreSQL database of its tenants"
            else:
                fix = f"set {DATABASE_URL_ENV_VAR}={recorded} (with its password)"
            given = (
                f"{DATABASE_URL_ENV_VAR} says {describe_backend(self.database_url)}"
                if self.database_url
                else f"{DATABASE_URL_ENV_VAR} is not set (sqlite)"
            )
            raise HomeError(
                f"this home keeps its tenants' data in {recorded}, but {given}: {fix}; "
                "moving tenants to another backend is a backup and a restore there"
            )

    def record_backend(self) -> None:
        """Write the backend and storage records if the home has none yet; if another
        process wrote them meanwhile, they must agree. (A command checks the home before
        it makes a tenant: the tenant just made must not be taken for an old one.)

        :raises HomeError:
        """
        storage = describe_storage()
        if storage != LOCAL_STORAGE:  # the home's claim on the prefix goes with it
            storage += f"\n{secrets.token_hex(16)}"
        written = []
        for path, value in (
            (self.backend_file, describe_backend(self.database_url)),
            (self.storage_file, storage),
        ):
            if not path.exists():
                self.tenants_dir.mkdir(parents=True, exist_ok=True)
                temp = self.tenants_dir / f"{path.name}.{os.getpid()}.tmp"
                temp.write_text(value + "\n")
                try:
                    os.link(temp, path)  # never replaces a record
                    written.append(path)
                except FileExistsError:
                    pass
                finally:
                    temp.unlink(missing_ok=True)
        self.check_backend()
        try:
            self.check_claim(claiming=True)
        except HomeError:
            if self.storage_file in written:  # unclaimed: the next try claims afresh
                self.storage_file.unlink(missing_ok=True)
            raise

    def check_claim(self, claiming: bool = False) -> None:
        """Object storage: the bucket prefix must be this home's (its claim object holds the
        id the home's storage record holds), so that two homes never sweep or delete each
        other's tenants' objects, and a host on another store of the same bucket name is
        refused. ``claiming``: a prefix no home claims becomes this one's (as the record
        is written). A home without a record yet may not take a prefix another home
        claims. A store that does not answer is logged, not refused (unless claiming):
        the server's routes answer 503 meanwhile, and commands go on.

        :raises HomeError:
        """
        location = storage_location_from_environ()
        if location is None:
            return
        try:
            record = self.storage_file.read_text().split() or None
        except FileNotFoundError:
            record = None  # no tenant yet: the prefix must not be another home's
        if record is not None and (record[0] == LOCAL_STORAGE or len(record) < 2):
            return  # the local disk (check_storage refuses the URL), or no id to check
        # lazy: /healthz answers before the object-store code loads
        from tenantry.storage.errors import ObjectStoreError
        from tenantry.storage.s3 import claim_prefix

        try:
            claim_prefix(location, record[1] if record else None, create=claiming)
        except ObjectStoreError as exc:
            if not claiming:  # the store away: its routes answer 503; commands go on
                log.warning("the claim on %s could not be read: %s", STORAGE_URL_ENV_VAR, exc)
                return
            raise HomeError(f"{STORAGE_URL_ENV_VAR}: {exc}") from None
        except ValueError as exc:
            raise HomeError(f"{STORAGE_URL_ENV_VAR}: {exc}") from None

    @property
    def storage_file(self) -> Path:
        return self.tenants_dir / STORAGE_FILE

    def recorded_storage(self, infer: bool = True) -> str | None:
        """Where the home's tenants keep their files: its record, else (a home made before
        the record; not with ``infer`` False) the local disk if it has tenants. None for a
        home without tenants."""
        try:
            return self.storage_file.read_text().split("\n", 1)[0].strip() or None
        except FileNotFoundError:
            if not infer:
                return None
        return LOCAL_STORAGE if any(self.instance_dir(s).is_dir() for s in self.slugs()) else None

    def check_storage(self, infer: bool = True) -> None:
        """:raises HomeError: TENANTRY_STORAGE_URL disagrees with where the home's files
        are (a host that keeps them elsewhere would lose them for the others), or is
        malformed."""
        given = describe_storage()
        recorded = self.recorded_storage(infer)
        if recorded is None or recorded == given:
            return
        if recorded == LOCAL_STORAGE:
            fix, says = f"unset {STORAGE_URL_ENV_VAR}", f"{STORAGE_URL_ENV_VAR} says {given}"
        else:
            fix = f"set {STORAGE_URL_ENV_VAR}={recorded}"
            says = (
                f"{STORAGE_URL_ENV_VAR} is not set (local disk)"
                if given == LOCAL_STORAGE
                else f"{STORAGE_URL_ENV_VAR} says {given}"
            )
        raise HomeError(
            f"this home keeps its tenants' files in {recorded}, but {says}: {fix}; moving "
            "tenants to other storage is a backup and a restore there"
        )

    def check_layout(self) -> None:
        """:raises HomeError: the folder is not a home (it has no ``config/``)."""
        if not self.config_dir.is_dir():
            raise HomeError(
                f"{self.root} is not a tenantry home (it has no config/ folder): {HOME_HINT}"
            )

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
