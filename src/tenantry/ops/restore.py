"""Restoring a tenant from an archive: built aside, checked, then swapped in atomically.

A restore builds the whole tenant aside, in a staging folder of ``tenants/`` (and a staging
schema on PostgreSQL, :mod:`tenantry.ops.staging`): the schema at the archive's revisions,
its rows loaded, then migrated forward. Only once it is complete and checked is it swapped
in (:mod:`tenantry.ops.swap`): the schemas swap names in one transaction, the folders in one
``renameat2(RENAME_EXCHANGE)``, then the config module is replaced. A restore killed before
the swap leaves the old tenant as it was; ``tenantry gc`` removes what it left aside.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, text, update
from sqlalchemy.exc import SQLAlchemyError

from tenantry.config import TenantConfigError, is_valid_slug
from tenantry.data import audit
from tenantry.data.db import MIGRATIONS_DIR, SCHEMA_REVISION, Base, TenantDatabase, tenant_database
from tenantry.data.users import user_row_problem
from tenantry.home.env import (
    parse_env,
    read_secrets,
    with_new_secret_key,
)
from tenantry.home.hosts import HostIndex, normalised_hosts
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_file
from tenantry.home.settings import (
    tenant_modules,
    tenant_settings,
)
from tenantry.modules.loader import EndpointModuleError, installed_module_names, load_module
from tenantry.ops.archive import (
    CONFIG_MEMBER,
    ENV_MEMBER,
    FILE_MEMBER,
    MAX_SMALL_MEMBER,
    TABLE_MEMBER,
    ArchiveError,
    ArchiveReader,
)
from tenantry.ops.backups import open_listed_backup
from tenantry.ops.errors import OperationFailed, OperationRefused, failure_reason
from tenantry.ops.gc import collect_garbage
from tenantry.ops.hold import operation_lock, writes_held
from tenantry.ops.jobs import drop_jobs
from tenantry.ops.rows import (
    MAX_INTEGER,
    SKIPPED_TABLES,
    VERSION_TABLES,
    count_rows,
    load_tables,
    reflect_tables,
    tables_by_name,
)
from tenantry.ops.staging import DISK_MARGIN, Staging, objects_of
from tenantry.ops.swap import swap_in
from tenantry.ops.templates import WSGI_MODULE, class_name, python_literal
from tenantry.storage.errors import ObjectStoreError
from tenantry.storage.local import TenantStorage
from tenantry.storage.objects import TenantObjects
from tenantry.support.atomic import PRIVATE_DIR, PRIVATE_FILE

log = logging.getLogger(__name__)


def restore_tenant(
    home: TenantHome,
    archive: str | os.PathLike[str],
    as_slug: str | None = None,
    force: bool = False,
    discard_files: bool = False,
):
    """Recreate the tenant of ``archive`` (as ``as_slug``, with a fresh SECRET_KEY),
    replacing an existing one only with ``force`` (atomically; with an archive made
    without files, only with ``discard_files`` too: the tenant's files would go). Returns
    what was restored (slug, users, files, notes).

    :raises TenantError: invalid slug, an existing tenant without ``force``, an unreadable
        file. :raises OperationFailed: the archive is damaged or newer than this tenantry;
        nothing changed.
    """
    home.check_backend()
    return restore(home, Path(archive), as_slug, force, discard_files)


def _check_revisions(revisions: object) -> dict[str, str]:
    """:raises OperationFailed: the archive's platform revision is newer than this
    tenantry's (or not one of its revisions)."""

    if (
        not isinstance(revisions, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in revisions.items())
        or "alembic_version" not in revisions
    ):
        raise OperationFailed("the manifest does not give the database's revision")
    known = sorted(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    revision = revisions["alembic_version"]
    if revision not in known:
        raise OperationFailed(
            f"the archive's database is at revision {revision}, which this tenantry (at "
            f"{SCHEMA_REVISION}) does not know: restore it with a newer tenantry"
        )
    return revisions


def _rewrite_config(source: str, old: str, new: str, drop_hosts: bool) -> str:
    """The config module ``source`` for a copy named ``new``: its SLUG (and a NAME that
    was the old slug, and the class name made from it); HOSTS emptied if ``drop_hosts``.

    :raises OperationFailed: the module does not have the lines tenantry writes.
    """

    def replace(pattern: str, line: str, text: str, required: bool = True, count=1) -> str:
        found = re.subn(pattern, line, text, count=count, flags=re.MULTILINE)
        if required and not found[1]:
            raise OperationFailed(
                "the config module has no line like the ones tenantry writes "
                f"({pattern!r}): copy it by hand"
            )
        return found[0]

    def assigned(name: str, value: str) -> str:  # NAME = "value" (either quotes, a comment)
        return rf"^(\s+){name}\s*=\s*([\"']){re.escape(value)}\2(\s*#.*)?\s*$"

    text = replace(assigned("SLUG", old), rf"\1SLUG = {python_literal(new)}\3", source)
    text = replace(
        assigned("NAME", old), rf"\1NAME = {python_literal(new)}\3", text, required=False
    )
    text = replace(
        rf"^class {class_name(old)}\(", f"class {class_name(new)}(", text, required=False
    )
    if drop_hosts:
        text = replace(r"^(\s+)HOSTS\s*=.*$", r"\1HOSTS = ()", text, count=0)
    return text


def _taken_hosts(home: TenantHome, hosts, besides: str) -> list[str]:
    index = HostIndex(home, persist=False)
    index.refresh()
    return sorted(
        host
        for host in normalised_hosts(hosts)
        if any(slug != besides for slug in index.claims.get(host, ()))
    )


def require_new_slot(home: TenantHome, slug: str, hint: str = ": --force replaces it") -> None:
    if home.config_file(slug).exists():
        raise OperationRefused(f"tenant {slug!r} already exists{hint}")
    if home.instance_dir(slug).exists():
        raise OperationRefused(
            f"tenants/{slug}/ exists without a config module (left by a tenant removed by "
            "hand, or a killed restore: `tenantry gc` removes the latter)"
        )
    if home.database_url and tenant_database(home, slug).exists():
        raise OperationRefused(
            f"the database already holds the schema of an earlier tenant {slug!r}: drop it "
            "first, or choose another slug"
        )


@dataclass
class Restored:
    slug: str
    users: int
    files: int
    notes: list[str]


def restore(
    home: TenantHome,
    archive: Path,
    as_slug: str | None = None,
    force: bool = False,
    discard_files: bool = False,
) -> Restored:
    """Recreate a tenant from an archive (see the module's docstring).

    :raises OperationRefused: the slug is invalid, or exists without ``force``; the archive
        cannot be opened. :raises OperationFailed: the archive is bad or too new, or the
        restore failed; the tenant there (if any) is as it was.
    """
    if as_slug is not None and not is_valid_slug(as_slug):
        raise OperationRefused(f"invalid slug {as_slug!r}")
    try:
        source = open(archive, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        # A scheduled backup, named as `tenants backups` lists it.
        source = open_listed_backup(home, str(archive))
        if source is None:
            raise OperationRefused(f"{archive} does not exist") from None
    except OSError as exc:
        raise OperationRefused(f"{archive} cannot be read: {exc.strerror or exc}") from None
    with source:
        try:
            with ArchiveReader(source) as reader:
                restored = _restore(home, reader, archive.name, as_slug, force, discard_files)
        except ArchiveError as exc:
            raise OperationFailed(f"{archive}: {exc}") from None
    sweep_after(home, restored.slug)
    return restored


def _restore(
    home: TenantHome,
    reader: ArchiveReader,
    archive_name: str,
    as_slug: str | None,
    force: bool,
    discard_files: bool = False,
) -> Restored:
    manifest = reader.manifest
    original = manifest.get("slug")
    if not isinstance(original, str) or not is_valid_slug(original):
        raise ArchiveError("the manifest names no valid slug")
    slug = as_slug or original
    revisions = _check_revisions(manifest.get("revisions"))
    sequences = _check_sequences(manifest.get("sequences"))
    if not (force and home.exists(slug)):
        require_new_slot(home, slug)
    root = home.tenants_dir if home.tenants_dir.exists() else home.root
    free = shutil.disk_usage(root).free
    if reader.total_size + DISK_MARGIN > free:
        raise ArchiveError(f"restoring needs {reader.total_size} bytes; the disk has {free} free")
    home.tenants_dir.mkdir(parents=True, exist_ok=True)
    with operation_lock(home, slug):
        replacing = force and home.exists(slug)
        if not replacing:
            require_new_slot(home, slug)  # again, now that no other operation can take it
        elif not manifest.get("files") and not discard_files:
            raise OperationRefused(
                f"{archive_name} holds no files (a backup made with --no-files): restoring "
                f"it over {slug} would delete every file {slug} has; add --discard-files "
                "to do that"
            )
        # A write to the tenant being replaced would be lost with it: held from the start.
        holding = writes_held(home, slug) if replacing else contextlib.nullcontext()
        with holding, Staging.create(home, slug) as staging:
            try:
                tables, config, env = _extract(reader, staging)
            except OSError as exc:
                raise OperationFailed(f"restoring failed: {exc.strerror or exc}") from None
            try:
                config_text, env_text = config.decode(), env.decode()
            except UnicodeDecodeError:
                raise ArchiveError("the config module or the .env is not UTF-8 text") from None
            if slug != original:
                env_text = with_new_secret_key(env_text)
            fill = functools.partial(
                migrate_and_load,
                tables=tables,
                revisions=revisions,
                sequences=sequences,
                blobs=staging.tenant / "storage" / ".blobs" if manifest.get("files") else None,
            )
            if replacing:
                key = parse_env(env_text).get("SECRET_KEY")
                fill = _and_then(fill, functools.partial(_keep_sessions_ended, home, slug, key))
            recorded = ("tenant.restore", archive_name)
            try:
                result = build_aside(
                    home, staging, slug, original, config_text, env_text, fill, replacing, recorded
                )
            except BaseException:
                if not replacing:
                    forget_unmade(home, slug)
                raise
            if replacing:
                drop_jobs(home, slug, queued_only=True)
    rows = manifest.get("rows")
    result.files = rows.get("stored_files", 0) if isinstance(rows, dict) else 0
    if not manifest.get("files"):
        result.notes.append(
            "the archive holds no files (made with --no-files): the tenant has none"
        )
    return result


def _and_then(first, then):
    def both(database, modules):
        first(database, modules)
        then(database)

    return both


def _check_sequences(sequences: object) -> dict[str, dict]:
    if sequences is None:
        return {}
    if not isinstance(sequences, dict) or not all(
        isinstance(counter, dict)
        and isinstance(counter.get("column"), str)
        and isinstance(counter.get("value"), int)
        and not isinstance(counter.get("value"), bool)
        for counter in sequences.values()
    ):
        raise ArchiveError("the manifest's sequences are not {table: {column, value}}")
    for table, counter in sequences.items():
        if not 0 <= counter["value"] <= MAX_INTEGER:
            raise ArchiveError(f"the manifest's sequence of {table!r:.60} is out of range")
    return sequences


def _keep_sessions_ended(
    home: TenantHome, slug: str, restored_key: str | None, restored: TenantDatabase
) -> None:
    """Over a live tenant, a restore must not bring back sessions ended since the backup:
    the live tenant's revocations are kept, a user's token generation never goes back
    (users by id: a token names its user by id), users deleted since come back with none
    of their old tokens valid, and if the live key is not the archived one (rotated since),
    no token of either works."""

    live = tenant_database(home, slug, read_only=True)  # creates nothing if it is lost
    try:
        with live.engine.connect() as connection:
            tables = tables_by_name(reflect_tables(connection, live.schema))
            users, revoked = tables.get("users"), tables.get("revoked_tokens")
            if users is None or "token_generation" not in users.c:
                generations = {}
            else:
                query = select(users.c.id, users.c.token_generation)
                generations = {user: gen for user, gen in connection.execute(query)}
            ended = []
            if revoked is not None:
                alive = revoked.c.expires_at > time.time()
                rows = connection.execute(select(revoked).where(alive)).mappings()
                ended = [dict(row) for row in rows]
    except SQLAlchemyError:
        generations, ended = None, []  # the live database is broken (why restore, else)
    finally:
        live.dispose()
    rotated = read_secrets(home, slug).get("SECRET_KEY") != restored_key
    with restored.engine.begin() as connection:
        tables = tables_by_name(reflect_tables(connection, restored.schema))
        users, revoked = tables["users"], tables["revoked_tokens"]
        for user, generation in list(
            connection.execute(select(users.c.id, users.c.token_generation))
        ):
            live_generation = (generations or {}).get(user)
            kept = max(generation, live_generation or 0)
            if generations is None or rotated or live_generation is None:
                kept += 1  # unknown, rotated or deleted since: its old tokens die
            if kept != generation:
                connection.execute(
                    update(users).where(users.c.id == user).values(token_generation=kept)
                )
        present = set(connection.execute(select(revoked.c.jti)).scalars())
        missing = [row for row in ended if row["jti"] not in present]
        if missing:
            connection.execute(revoked.insert(), missing)


def _extract(reader: ArchiveReader, staging: Staging):
    """Stream every member into the staging folder, checking each; returns the table
    files, the config module and the .env. :raises ArchiveError:"""
    blobs = staging.tenant / "storage" / ".blobs"
    TenantStorage(staging.tenant / "storage").ensure()
    tables_dir = staging.folder / ".tables"
    tables_dir.mkdir(mode=PRIVATE_DIR)
    tables: list[tuple[str, Path]] = []
    small: dict[str, bytes] = {}
    for member, stream in reader.members():
        if member.name in (CONFIG_MEMBER, ENV_MEMBER):
            if member.size > MAX_SMALL_MEMBER:
                raise ArchiveError(f"member {member.name} is too large")
            small[member.name] = stream.read()
            continue
        table = TABLE_MEMBER.fullmatch(member.name)
        if table is not None:
            name = table.group(1)
            if name in SKIPPED_TABLES or VERSION_TABLES.fullmatch(name):
                raise ArchiveError(f"member {member.name} is not one a backup carries")
            path = tables_dir / f"{name}.jsonl"
            tables.append((name, path))
        else:
            path = blobs / FILE_MEMBER.fullmatch(member.name).group(1)
        part = path.with_name(path.name + ".part")
        with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE), "wb") as out:
            while chunk := stream.read(1024 * 1024):
                out.write(chunk)
        stream.finish()  # raises before a damaged member gets its name
        os.replace(part, path)
    return tables, small[CONFIG_MEMBER], small[ENV_MEMBER]


def build_aside(
    home: TenantHome,
    staging: Staging,
    slug: str,
    original: str,
    config_text: str,
    env_text: str,
    fill: Callable[[TenantDatabase, tuple], None],
    replacing: bool,
    recorded: tuple[str, str],
) -> Restored:
    """Finish the tenant in ``staging`` (config, .env; its database made by ``fill``,
    given the database and the config's modules, and the audit entry ``recorded``, an
    action and its target, so that it is there exactly when the tenant is) and swap it in.

    :raises OperationFailed: the tenant cannot be made or put in place (the one there,
        if any, is as it was).
    """

    notes: list[str] = []
    config_class, config_text = _restored_config(home, staging, slug, original, config_text, notes)
    try:
        modules = tenant_modules(config_class)
        tenant_settings(config_class, parse_env(env_text), staging.tenant)
    except TenantConfigError as exc:
        raise OperationFailed("; ".join(exc.problems)) from None
    env = staging.tenant / ".env"
    os.close(os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    env.write_text(env_text)
    (staging.tenant / "wsgi.py").write_text(WSGI_MODULE.format(slug=slug))
    try:
        database = staging.database(slug)
        try:
            fill(database, modules)
            audit.record_now(database, *recorded)
            users = count_rows(database, "users")
        finally:
            database.dispose()
        shutil.rmtree(staging.folder / ".tables", ignore_errors=True)
        objects = objects_of(home, slug)
        if objects is not None:
            _publish_blobs(objects, staging)
        swap_in(home, staging, slug, config_text, replacing)
    except (OSError, SQLAlchemyError, ObjectStoreError) as exc:
        raise OperationFailed(
            f"putting {slug} in place failed ({failure_reason(exc)}); the tenant there is as it was"
        ) from None
    return Restored(slug, users, 0, notes)


def _publish_blobs(objects: TenantObjects, staging: Staging) -> None:
    """Object storage: stream the blobs staged on the local disk (checked against their
    records already) into the tenant's prefix, then remove the local copies. Blobs are
    addressed by content: the tenant there (if any) does not see the new ones, and those
    no record names once the tenant is in place (or if it never is) are the sweep's to
    remove (:func:`sweep_after`)."""
    folder = staging.tenant / "storage" / ".blobs"
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        objects.add_blob(entry.name, Path(entry.path))
        os.unlink(entry.path)


def forget_unmade(home: TenantHome, slug: str) -> None:
    """Object storage, a restore or clone into a new slot that failed (under its operation
    lock): the files it put in the store go, unless the tenant came to be after all. Not
    raised: a failure leaves garbage under a slug no tenant has."""
    objects = objects_of(home, slug)
    if objects is None or home.exists(slug):
        return
    try:
        objects.drop_everything()
    except ObjectStoreError:
        log.warning("removing the files of the unmade %s failed", slug, exc_info=True)


def sweep_after(home: TenantHome, slug: str) -> None:
    """Object storage, after a restore or clone put ``slug`` in place (and let go of its
    operation lock): remove what its records do not name — the replaced tenant's blobs
    and link snapshots — under the storage lock, as the server's sweep does, so that a
    file stored meanwhile through a host is never taken. A failure leaves garbage for
    the next sweep, never a missing byte: logged, not raised."""
    if objects_of(home, slug) is None:
        return
    outcome = collect_garbage(home, [slug]).get(slug)
    if isinstance(outcome, str):
        log.warning("sweeping %s after putting it in place failed: %s", slug, outcome)


def _restored_config(
    home: TenantHome, staging: Staging, slug: str, original: str, text: str, notes: list[str]
):
    """The config class and module source the tenant gets: the archived one, or for a
    copy, rewritten to its slug (hosts another tenant has are dropped, with a note)."""
    try:
        config_class = load_config_file(_write_config(staging, text), original)
    except TenantConfigError as exc:
        raise OperationFailed("the archived config module: " + "; ".join(exc.problems)) from None
    taken = _taken_hosts(home, config_class.HOSTS, besides=slug)
    if slug == original:
        if taken:
            raise OperationFailed(f"host already used by another tenant: {', '.join(taken)}")
        return config_class, text
    if taken:
        notes.append(f"hosts not carried (another tenant has them): {', '.join(taken)}")
    text = _rewrite_config(text, original, slug, drop_hosts=bool(taken))
    try:
        config_class = load_config_file(_write_config(staging, text), slug)
    except TenantConfigError as exc:
        raise OperationFailed("; ".join(exc.problems)) from None
    still = _taken_hosts(home, config_class.HOSTS, besides=slug)
    if still:  # HOSTS set in a way the rewrite does not know: never take a live host
        raise OperationFailed(
            f"the copy would take hosts of another tenant ({', '.join(still)}): copy the "
            "config module by hand"
        )
    return config_class, text


def _write_config(staging: Staging, text: str) -> Path:
    path = staging.folder / "config.py"
    path.write_text(text)
    return path


def migrate_and_load(
    database: TenantDatabase,
    modules: tuple,
    tables: list[tuple[str, Path]],
    revisions: dict[str, str],
    sequences: dict[str, dict],
    blobs: Path | None = None,
) -> None:
    """Build the schema at the archive's revisions (the platform's, each module's; also
    the tables of modules the tenant had once and disabled, whose data it keeps), load the
    rows, migrate forward. With ``blobs``, every stored file's bytes must be there."""
    # lazy: alembic loads only when a database migrates, not for every tenant app
    from alembic.util import CommandError

    try:
        database.migrate_to(revisions["alembic_version"])
        for module in _modules_with_tables(modules, {name for name, _ in tables}, revisions):
            if module.migrations is not None:
                database.migrate_to(revisions[module.version_table], module)
            else:
                with database.engine.begin() as connection:
                    Base.metadata.create_all(connection, tables=module.tables(), checkfirst=True)
        load_tables(database, tables, sequences, check_row=functools.partial(_row_problem, modules))
        database.upgrade(modules)
        if blobs is not None:
            _check_blobs(database, blobs)
    except CommandError as exc:
        raise OperationFailed(f"the archive's revisions cannot be built here: {exc}") from None
    except SQLAlchemyError as exc:
        raise OperationFailed(f"loading the archived rows failed: {failure_reason(exc)}") from None


def _modules_with_tables(modules: tuple, names: set[str], revisions: dict[str, str]) -> list:
    """The endpoint modules (not built in) whose tables the archive holds: the tenant's,
    and installed ones it no longer enables."""

    found = {module.key: module for module in modules if not module.is_builtin}
    for name in installed_module_names():
        try:
            module = load_module(name)
        except EndpointModuleError:
            continue
        if not module.is_builtin:
            found.setdefault(module.key, module)

    def archived(module) -> bool:
        if module.migrations is not None:
            return module.version_table in revisions
        return any(table.name in names for table in module.tables())

    return [module for module in found.values() if archived(module)]


def _row_problem(modules: tuple, table: str, row: dict) -> str | None:
    """A restored row checked by the rules of the platform (users) and of each module (its
    ``check_row``, for its own tables)."""
    problem = user_row_problem(table, row)
    for module in modules:
        if problem is None and module.check_row is not None:
            problem = module.check_row(table, row)
    return problem


def _check_blobs(database: TenantDatabase, blobs: Path) -> None:
    """:raises OperationFailed: a stored file's bytes are not in the archive."""

    name = f'"{database.schema}".stored_files' if database.is_postgres else "stored_files"
    with database.engine.connect() as connection:
        for file, sha256 in connection.execute(text(f"SELECT name, sha256 FROM {name}")):  # noqa: S608
            if not (blobs / sha256).is_file():
                raise OperationFailed(f"the archive lacks the bytes of stored file {file!r}")
