"""Each tenant's audit log: who did what, in the tenant's own database, hash-chained.

Every entry holds the sha256 of the entry before it (``prev_hash``) and its own hash over
that and its content (``hash``), so an edited, inserted or deleted row breaks the chain
from there on and :func:`verify` names the first entry where it does. An entry is added in
the same transaction as the change it records (:func:`record`, called as the last write of
that transaction), so an action is never logged without happening, or the reverse. Times
are stored as text (UTC, microseconds), so a log hashes the same on SQLite and PostgreSQL
and still verifies after a backup is restored on the other backend.

Never put a password, token or secret into an entry: targets are usernames, file and
dataset names.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import pwd
import re
import zlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import g, has_request_context, request
from sqlalchemy import Integer, String, bindparam, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from tenantry.data.db import Base, TenantDatabase
from tenantry.support.errors import PlatformError

GENESIS = "0" * 64
# The schema revision that brought the log: a database at it or later must have it.
LOG_REVISION = "0007"
ACTION = re.compile(r"[a-z][a-z0-9_]{0,30}\.[a-z][a-z0-9_]{0,31}")
MAX_TARGET = 1024
SUCCESS = "success"
FAILURE = "failure"
ANONYMOUS = "anonymous"
ENTRY_FIELDS = ("id", "time", "actor", "action", "target", "outcome", "request_id", "remote_addr")


class LogMissing(PlatformError):
    """The tenant's database is at a revision that has the audit log, and it is gone."""


def has_log(database: TenantDatabase) -> bool:
    """Whether the tenant's database holds its audit log: False for a database made by a
    tenantry before the log.

    :raises LogMissing: the tenant has no database, or one that should have the log and
        does not. :raises SQLAlchemyError: the database cannot be read.
    """
    if not database.exists():
        raise LogMissing("the tenant has no database")
    if AuditEntry.__tablename__ in database.table_names():
        return True
    revision = database.current_revision()
    if revision is not None and revision >= LOG_REVISION:
        raise LogMissing(f"the database is at revision {revision} and has no audit_log table")
    return False


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(160), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(MAX_TARGET))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(128))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in ENTRY_FIELDS}


def content_hash(prev_hash: str, entry: dict) -> str:
    """The hash an entry must hold: sha256 of the previous entry's hash and its content."""
    content = json.dumps([entry[name] for name in ENTRY_FIELDS], separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def format_time(moment: datetime) -> str:
    """An entry's time: UTC, ISO 8601 with microseconds and ``Z`` (sorts as text: the
    year has its four digits, which strftime's ``%Y`` drops before 1000).

    :raises OverflowError: the time is not within years 1 to 9999 in UTC.
    """
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@functools.cache
def operator() -> str:
    """The actor of commands run outside a request: ``cli:<os user>``."""
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = f"uid{os.geteuid()}"
    return f"cli:{name}"


@dataclass(frozen=True)
class Actor:
    """Who an entry is for, and from where."""

    name: str
    request_id: str | None = None
    remote_addr: str | None = None


# Set by the platform API around an operator's change: the entries it makes are theirs.
_acting: ContextVar[Actor | None] = ContextVar("tenantry_audit_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Entries recorded in the block are ``actor``'s (an operator of the platform API,
    ``operator:<name>``), whatever request or command they are made in."""
    token = _acting.set(actor)
    try:
        yield
    finally:
        _acting.reset(token)


def current_actor() -> Actor:
    """Who :func:`acting_as` names; else the request's user (by its token; ``anonymous``
    without one), request id and client address; outside a request, the operator running
    the command."""
    acting = _acting.get()
    if acting is not None:
        return acting
    if not has_request_context():
        return Actor(operator())
    identity = g.get("tenantry_identity")
    return Actor(
        identity.user.username if identity is not None else ANONYMOUS,
        request.environ.get("tenantry.request_id"),
        request.remote_addr,
    )


def record(
    session: Session,
    action: str,
    target: str,
    outcome: str = SUCCESS,
    actor_name: str | None = None,
) -> None:
    """Add an entry to the log in ``session``'s transaction, as its last write: it takes
    the log's lock (SQLite: the database's write lock; PostgreSQL: a transaction lock of
    the tenant's schema), held until the transaction ends, so entries chain in order.
    The actor is :func:`current_actor`, under ``actor_name`` if given (a login names
    the user it is for before any token does)."""
    if not ACTION.fullmatch(action):
        raise ValueError(f"an audit action is <module>.<verb> (at most 64), got {action!r}")
    if outcome not in (SUCCESS, FAILURE):
        raise ValueError(f"an audit outcome is {SUCCESS!r} or {FAILURE!r}, got {outcome!r}")
    # Pending changes first: their row locks come before the log's lock, in every
    # transaction, so two of them cannot wait on each other.
    session.flush()
    actor = current_actor()
    if len(target) > MAX_TARGET:
        target = target[: MAX_TARGET - 1] + "…"
    entry = {
        "actor": (actor_name or actor.name)[:160],
        "action": action,
        "target": target,
        "outcome": outcome,
        "request_id": actor.request_id,
        "remote_addr": actor.remote_addr,
    }
    connection = session.connection()
    schema = (connection.get_execution_options().get("schema_translate_map") or {}).get(None)
    if schema is not None:
        key = zlib.crc32(f"audit:{schema}".encode())
        connection.execute(_LOCK, {"key": key})
        last = connection.execute(_LAST).first()
        entry["id"] = (last.id if last else 0) + 1  # in lock order, like the hashes
        _chain(entry, last.hash if last else GENESIS)
        connection.execute(_INSERT, entry)
        return
    # SQLite: written first, then chained. The insert is what takes the write lock, so no
    # other writer can add an entry between reading the last hash and this one.
    entry.update(time="", prev_hash="", hash="")
    entry["id"] = connection.execute(_INSERT, entry).inserted_primary_key[0]
    previous = connection.execute(_BEFORE, {"before": entry["id"]}).scalar()
    _chain(entry, previous or GENESIS)
    chained = {name: entry[name] for name in ("time", "prev_hash", "hash")}
    connection.execute(_CHAIN, {"entry": entry["id"], **chained})


def _chain(entry: dict, previous: str) -> None:
    entry["time"] = format_time(datetime.now(UTC))  # now that entries are in order
    entry["prev_hash"] = previous
    entry["hash"] = content_hash(previous, entry)


# Built once, with their values bound per call: every audited action runs them.
_table = AuditEntry.__table__
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_LAST = select(_table.c.id, _table.c.hash).order_by(_table.c.id.desc()).limit(1)
_INSERT = _table.insert()
_BEFORE = (
    select(_table.c.hash)
    .where(_table.c.id < bindparam("before"))
    .order_by(_table.c.id.desc())
    .limit(1)  # the one before: without it a scalar() would fetch every row
)
_CHAIN = (
    _table.update()
    .where(_table.c.id == bindparam("entry"))
    .values(time=bindparam("time"), prev_hash=bindparam("prev_hash"), hash=bindparam("hash"))
)


def record_now(database: TenantDatabase, action: str, target: str, outcome: str = SUCCESS) -> None:
    """Add an entry in a transaction of its own (for actions outside the database)."""
    with database.transaction() as session:
        record(session, action, target, outcome)


def entries(
    database: TenantDatabase,
    action: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict], int]:
    """A page of entries, newest first, and how many match; ``since`` is a
    :func:`format_time` time (inclusive)."""
    conditions = []
    if action is not None:
        conditions.append(AuditEntry.action == action)
    if actor is not None:
        conditions.append(AuditEntry.actor == actor)
    if since is not None:
        conditions.append(AuditEntry.time >= since)
    with database.transaction() as session:
        total = session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions))
        page = session.scalars(
            select(AuditEntry)
            .where(*conditions)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [entry.as_dict() for entry in page], total


def all_entries(database: TenantDatabase, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every entry, oldest first, read in batches (a log can be long)."""
    after = None
    while True:
        with database.transaction() as session:
            rows = list(
                session.scalars(
                    select(AuditEntry)
                    .where(True if after is None else AuditEntry.id > after)
                    .order_by(AuditEntry.id)
                    .limit(batch)
                )
            )
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].id


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: ``broken`` is None when the whole chain holds (then
    ``reason`` is empty); an ``expected`` head not in the chain breaks it after the end."""

    entries: int
    head: str = GENESIS
    broken: int | None = None
    reason: str = ""

    @property
    def holds(self) -> bool:
        return not self.reason


def verify(database: TenantDatabase, expected: str | None = None) -> Verdict:
    """Walk the chain from the first entry; stop at the first that does not hold: its
    content does not give its hash (edited), or it does not name the hash of the entry
    before it (an entry deleted or inserted before it). ``expected`` is a head an
    operator kept from an earlier run: the chain must still pass through it, else the
    log was cut short or rewritten from there (which the chain alone cannot show)."""
    previous = GENESIS
    count = 0
    seen = expected is None or expected == GENESIS
    for entry in all_entries(database):
        if entry.prev_hash != previous:
            reason = "it does not follow the entry before it (an entry deleted or inserted)"
            return Verdict(count, previous, entry.id, reason)
        if content_hash(entry.prev_hash, entry.as_dict()) != entry.hash:
            return Verdict(count, previous, entry.id, "its content does not match its hash")
        previous = entry.hash
        count += 1
        seen = seen or entry.hash == expected
    if not seen:
        reason = f"no entry has the head {expected}: the log was cut short or rewritten"
        return Verdict(count, previous, None, reason)
    return Verdict(count, previous)
