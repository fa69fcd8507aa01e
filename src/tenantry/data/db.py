"""Each tenant's database: a SQLite file of its own, or its own schema of one PostgreSQL database.

Models are declared once, without a schema, on :class:`Base`. A :class:`TenantDatabase`
binds them to one tenant: on SQLite through that tenant's own engine, on PostgreSQL through
the process's one shared engine with a ``schema_translate_map`` naming the tenant's schema,
so connections do not grow with the number of tenants. Both go through the same code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import NullPool
from sqlalchemy.util import LRUCache

from tenantry.support.atomic import PRIVATE_DIR, PRIVATE_FILE
from tenantry.support.locking import file_lock


class MigratingModule(Protocol):
    """What the migrations here need of an endpoint module: a
    :class:`tenantry.modules.loader.EndpointModule` is one. (A protocol rather than an import:
    the module loader builds on this file, not the other way round.)"""

    name: str
    migrations: Path | None
    seed: Callable | None  # seed(tenant): the module's first rows, once per tenant

    @property
    def version_table(self) -> str: ...

    def tables(self) -> list: ...


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest migration's revision; tests check it matches the migrations folder.
SCHEMA_REVISION = "0009"

SQLITE_CACHE_KIB = 256
PG_MAX_NAME = 63
PG_POOL_SIZE = 5
PG_MAX_OVERFLOW = 5
PG_CONNECT_TIMEOUT = 10


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def schema_name(slug: str) -> str:
    """The PostgreSQL schema of a tenant: ``tenant_<slug>`` with ``-`` as ``_``.

    PostgreSQL cuts names at 63 bytes, which would give two long slugs with the same
    first 56 characters one schema. A slug longer than 56 characters keeps its first 45
    and gets a hash of the whole slug instead.
    """
    name = "tenant_" + slug.replace("-", "_")
    if len(name) <= PG_MAX_NAME:
        return name
    digest = hashlib.sha256(slug.encode()).hexdigest()[:10]
    return f"{name[: PG_MAX_NAME - 11]}_{digest}"


def _configure_sqlite(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once across gunicorn workers; the busy
    # timeout makes a second writer wait instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Each loaded tenant keeps a connection; SQLite's default cache of up to 2 MiB each
    # would let 500 loaded tenants take 1 GiB. The OS page cache keeps hot pages anyway.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()
    # SQLite's lower() folds ASCII only; case-insensitive search must fold "Ä" too.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _sqlite_query(path: Path, query: str) -> list[tuple] | None:
    """Rows of one query on a SQLite file, without an engine (builds stay cheap); None if
    the file or the table is not there."""
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        return connection.execute(query).fetchall()
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def _first(rows: list[tuple] | None) -> str | None:
    return rows[0][0] if rows else None


def _alembic_config(versions: Path):
    # lazy: alembic loads only when a database migrates, not for every tenant app
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions))
    return config


@functools.cache
def module_head(versions: Path) -> str:
    """The newest revision of an endpoint module's own migrations folder.

    :raises ValueError: the folder has no revision, or more than one head.
    """
    # lazy: alembic loads only when a database migrates, not for every tenant app
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_alembic_config(versions)).get_heads()
    if len(heads) != 1:
        raise ValueError(f"{versions} must hold one line of revisions (heads: {heads})")
    return heads[0]


def _with_tables(modules: Sequence[MigratingModule]) -> list[MigratingModule]:
    """The modules whose tables tenantry manages per tenant (the built-ins' are in the
    platform's own migrations)."""
    return [m for m in modules if not m.is_builtin and (m.migrations is not None or m.tables())]


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def _name_connection(_dialect, _record, _args, params) -> None:
    # Operators (and the tests) can tell each process's connections apart in pg_stat_activity.
    params["application_name"] = f"tenantry[{os.getpid()}]"


_alembic_lock = threading.Lock()
_shared_engines: dict[str, Engine] = {}
_shared_engines_lock = threading.Lock()


def shared_engine(database_url: str) -> Engine:
    """The one engine (and pool) this process uses for every tenant on ``database_url``."""
    with _shared_engines_lock:
        engine = _shared_engines.get(database_url)
        if engine is None:
            engine = create_engine(
                database_url,
                pool_size=PG_POOL_SIZE,
                max_overflow=PG_MAX_OVERFLOW,
                pool_pre_ping=True,
                # A server that accepts and never answers must not hang a worker or a command.
                connect_args={"connect_timeout": PG_CONNECT_TIMEOUT},
            )
            event.listen(engine, "do_connect", _name_connection)
            _shared_engines[database_url] = engine
        return engine


def _read_only_engine(path: Path) -> Engine:
    """An engine reading ``path`` (:func:`_read_only_sqlite`). These are made and dropped
    per read of many tenants (`tenants stats`, the console's figures), so they share one
    SQLite dialect, and with it its cache of compiled statements: SQLAlchemy keys that
    cache by dialect, and a dialect per engine would compile every statement again for
    every tenant (two thirds of the time such a read took)."""
    template = _read_only_template()
    pool = NullPool(lambda: _read_only_sqlite(path))
    engine = Engine(pool, template.dialect, template.url)
    return engine.execution_options(compiled_cache=_READ_ONLY_COMPILED)


_READ_ONLY_COMPILED = LRUCache(500)


@functools.cache
def _read_only_template() -> Engine:
    """The engine whose (initialised) dialect and cache of compiled statements the
    read-only engines share."""
    engine = create_engine("sqlite://", poolclass=NullPool)
    with engine.connect():  # initialises the dialect (its SQLite version, its options)
        pass
    return engine


def tenant_database(home, slug: str, read_only: bool = False) -> TenantDatabase:
    """The tenant's database in ``home`` (a :class:`tenantry.home.layout.TenantHome`): its SQLite
    file, or its schema of the home's PostgreSQL database. Nothing is opened until it is
    used; call ``dispose()`` when done. ``read_only`` (for commands that must not write)
    creates nothing, not even a folder, and refuses writes."""
    return TenantDatabase(slug, home.instance_dir(slug), home.database_url, read_only)


def _read_only_sqlite(path: Path) -> sqlite3.Connection:
    """A connection that cannot write and leaves no file behind. ``mode=ro`` on a WAL
    database creates the -wal and -shm files when they are missing and cannot remove
    them; without a -wal file every commit is in the main file, which only a checkpoint
    changes, so it is read as immutable."""
    wal = path.with_name(path.name + "-wal")
    query = "mode=ro" if wal.exists() else "immutable=1"
    return sqlite3.connect(
        f"{path.as_uri()}?{query}", uri=True, timeout=10, check_same_thread=False
    )


class TenantDatabase:
    """The database of one tenant: its engine (bound to its schema) and sessions.

    A SQLite tenant's engine is made on first use, so a loaded tenant whose requests never
    touch its database (a landing page, say) holds no engine and no open file.
    """

    def __init__(
        self,
        slug: str,
        instance_path: Path,
        database_url: str | None = None,
        read_only: bool = False,
        schema: str | None = None,
    ):
        self.slug = slug
        self.read_only = read_only
        if database_url:
            # ``schema`` names another (a restore builds the tenant in one of its own).
            self.schema = schema or schema_name(slug)
            options = {"postgresql_readonly": True} if read_only else {}
            self.engine = shared_engine(database_url).execution_options(
                schema_translate_map={None: self.schema}, **options
            )
        else:
            self.schema = None
            if not read_only:
                instance_path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            self.path = instance_path / "tenant.db"
        self._lock_path = instance_path / ".migrate.lock"

    @functools.cached_property
    def engine(self) -> Engine:
        """The SQLite tenant's own engine (PostgreSQL tenants get theirs in __init__)."""
        if self.read_only:
            return _read_only_engine(self.path)
        if not self.path.exists():
            # SQLite creates the file, and its -wal and -shm later with the same mode,
            # as the umask allows (0644): create it private first.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        engine = create_engine(f"sqlite:///{self.path}")
        event.listen(engine, "connect", _configure_sqlite)
        return engine

    @property
    def is_postgres(self) -> bool:
        return self.schema is not None

    @property
    def insert(self):
        """The dialect's ``insert``, which has ``on_conflict_do_update/nothing`` (upserts)."""
        if self.is_postgres:
            # lazy: only the dialect of the backend in use
            from sqlalchemy.dialects.postgresql import insert
        else:
            # lazy: only the dialect of the backend in use
            from sqlalchemy.dialects.sqlite import insert
        return insert

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def check(self) -> None:
        """Run a trivial query. :raises SQLAlchemyError: the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")  # no statement to compile per probe

    def _sqlite_rows(self, query: str) -> list[tuple] | None:
        """Rows of one query on the SQLite file; None if the file or the table is not
        there. A read-only database reads through its read-only engine (which writes
        nothing, not even a -wal file) and lets any other error surface."""
        if not self.read_only:
            return _sqlite_query(self.path, query)
        if not self.path.exists():
            return None
        try:
            with self.engine.connect() as connection:
                return connection.exec_driver_sql(query).fetchall()
        except OperationalError as exc:
            if "no such table" in str(exc.orig):
                return None
            raise

    def current_revision(self, version_table: str = "alembic_version") -> str | None:
        """The revision the database (or, with ``version_table``, one endpoint module's
        tables) is at; None if never migrated. ``version_table`` is a name tenantry made."""
        if not self.is_postgres:
            return _first(self._sqlite_rows(f"SELECT version_num FROM {version_table}"))  # noqa: S608
        # A text() query is not rewritten by schema_translate_map: name the schema here.
        query = text(f'SELECT version_num FROM "{self.schema}".{version_table}')  # noqa: S608
        try:
            with self.engine.connect() as connection:
                return connection.execute(query).scalar()
        except SQLAlchemyError:
            return None

    def table_names(self) -> set[str]:
        """The names of the tables the tenant's database or schema holds."""
        if not self.is_postgres:
            rows = self._sqlite_rows("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {row[0] for row in rows or ()}
        query = text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s")
        with self.engine.connect() as connection:
            return set(connection.execute(query, {"s": self.schema}).scalars())

    def exists(self) -> bool:
        """Whether the tenant's schema (PostgreSQL) or database file (SQLite) is there."""
        if not self.is_postgres:
            return self.path.exists()
        query = text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :schema")
        with self.engine.connect() as connection:
            return connection.execute(query, {"schema": self.schema}).first() is not None

    def drop_schema(self) -> None:
        """Remove a PostgreSQL tenant's schema and all it holds (SQLite: nothing to do)."""
        if self.is_postgres:
            with self.engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def by_bytes(self, column):
        """``column`` for ORDER BY in byte order on both backends (PostgreSQL would sort
        by its locale's rules)."""
        return column.collate("C") if self.is_postgres else column

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Serialise migrations of this tenant across processes."""
        if self.is_postgres:
            key = zlib.crc32(self.schema.encode())
            with self.engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
        else:
            with file_lock(self._lock_path):
                yield

    def upgrade(self, modules: Sequence[MigratingModule] = (), tenant: object | None = None) -> str:
        """Bring the platform's schema to :data:`SCHEMA_REVISION` with alembic, then the
        tables of each endpoint module in ``modules`` that brings its own. A module's
        ``seed(tenant)`` runs when its tables are first made, in their transaction, given
        ``tenant``; without one (a sweep, a restore), the tables of a module with a seed
        are not made yet.

        :returns: the platform's revision, followed by each module's in parentheses.
        :raises SQLAlchemyError: the database refused a migration step.
        :raises Exception: whatever a module's ``seed`` raised (its tables are not made).
        """
        with self.migration_lock():
            if self.current_revision() != SCHEMA_REVISION:
                if self.is_postgres:
                    with self.engine.begin() as connection:
                        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                self._run_alembic(MIGRATIONS_DIR / "versions", "alembic_version")
            done = [self._upgrade_module(module, tenant) for module in _with_tables(modules)]
        revisions = [f"{module.name}: {revision}" for module, revision in done if revision]
        return SCHEMA_REVISION + (f" ({', '.join(revisions)})" if revisions else "")

    def ensure_current(
        self, modules: Sequence[MigratingModule] = (), tenant: object | None = None
    ) -> None:
        """Migrate the database if it is behind (cheap when it is not): its platform
        schema and the tables of its endpoint modules (seeded for ``tenant``, see
        :meth:`upgrade`)."""
        if self.current_revision() != SCHEMA_REVISION or not self._modules_current(modules):
            self.upgrade(modules, tenant)

    def _modules_current(self, modules: Sequence[MigratingModule]) -> bool:
        own = _with_tables(modules)
        if not own:
            return True
        tables = None
        for module in own:
            if module.migrations is not None:
                if self.current_revision(module.version_table) != module_head(module.migrations):
                    return False
            else:
                tables = self.table_names() if tables is None else tables
                if any(table.name not in tables for table in module.tables()):
                    return False
        return True

    def _upgrade_module(
        self, module: MigratingModule, tenant: object | None = None
    ) -> tuple[MigratingModule, str | None]:
        """Migrate one module's tables (its own alembic line, or create what is missing);
        seed them for ``tenant`` if they are new, in the same transaction."""
        head = module_head(module.migrations) if module.migrations is not None else None
        if module.migrations is not None:
            revision = self.current_revision(module.version_table)
            if revision == head:
                return module, head
            new = revision is None
        else:
            tables = self.table_names()
            new = not any(table.name in tables for table in module.tables())
        if new and module.seed is not None and tenant is None:
            # Tables a seed must fill are made only where the seed can run (the tenant's
            # next build, create, migrate): made empty here (by a sweep, a restore), they
            # would never be seeded.
            return module, None
        seeding = new and module.seed is not None
        with self.engine.begin() as connection:
            if seeding and not self.is_postgres:
                # pysqlite begins a transaction before DML only: without this, the tables
                # would be made (and kept) even when the seed that follows fails.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            if module.migrations is not None:
                self._run_alembic(module.migrations, module.version_table, connection=connection)
            else:
                Base.metadata.create_all(connection, tables=module.tables(), checkfirst=True)
            if seeding:
                module.seed(dataclasses.replace(tenant, database=SeedingDatabase(self, connection)))
        return module, head

    def migrate_to(self, revision: str, module: MigratingModule | None = None) -> None:
        """Bring the platform's schema (or ``module``'s tables) to ``revision``, no
        further: a restore loads an archive's rows at the revision they were written at.

        :raises alembic.util.CommandError: the revision is not one this tenantry knows.
        """
        with self.migration_lock():
            if module is not None:
                self._run_alembic(module.migrations, module.version_table, revision)
                return
            if self.is_postgres:
                with self.engine.begin() as connection:
                    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            self._run_alembic(MIGRATIONS_DIR / "versions", "alembic_version", revision)

    def _run_alembic(
        self,
        versions: Path,
        version_table: str,
        target: str = "heads",
        connection: Connection | None = None,
    ) -> None:
        """Upgrade to ``target`` in a transaction of its own, or in ``connection``'s."""
        # lazy: alembic loads only when a database migrates, not for every tenant app
        from alembic import command

        config = _alembic_config(versions)
        # Alembic's migration context is a module global: one migration per process
        # at a time (parallel `migrate` uses processes).
        with _alembic_lock, contextlib.ExitStack() as stack:
            if connection is None:
                connection = stack.enter_context(self.engine.begin())
            config.attributes["connection"] = connection
            config.attributes["schema"] = self.schema
            config.attributes["version_table"] = version_table
            command.upgrade(config, target)

    def dispose(self) -> None:
        """Release the connections this tenant holds (not the shared pool's)."""
        if not self.is_postgres and "engine" in self.__dict__:
            self.engine.dispose()


class SeedingDatabase:
    """A tenant's database while an endpoint module's tables are first made: what its
    ``seed`` writes through :meth:`transaction` is part of that transaction, so the tables
    exist with their first rows or not at all. Everything else is the tenant's database,
    but its ``engine``: another connection would not see the new tables (and would wait
    for the transaction's lock to write)."""

    def __init__(self, database: TenantDatabase, connection: Connection):
        self._database = database
        self._connection = connection

    @property
    def engine(self):
        raise RuntimeError(
            "a module's seed writes through tenant.database.transaction(): the engine's "
            "connections are outside the transaction that makes the module's tables"
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session joined to the tables' transaction (its end commits nothing yet)."""
        with Session(bind=self._connection, expire_on_commit=False) as session:
            yield session
            session.flush()

    def __getattr__(self, name: str):
        return getattr(self._database, name)
