"""One-time links: a snapshot of some bytes, served by one GET, then gone.

The uid is the capability (256 random bits). Redeeming is one conditional UPDATE in the
tenant database, so among any number of concurrent requests in any number of workers
exactly one wins.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from sqlalchemy import BigInteger, Boolean, Float, Select, String, delete, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.endpoint import Base, Storage, TenantDatabase, audit

log = logging.getLogger(__name__)

DEFAULT_TTL = 300
MAX_TTL = 86400
UID_BYTES = 32
# What secrets.token_urlsafe makes (anything else is no link of ours, unlooked-up).
UID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# How many expired snapshots one clean-up pass removes, so no request pays for a backlog.
CLEANUP_BATCH = 100
# How long a used or expired link keeps answering 410 before it is forgotten (then 404).
LINK_RETENTION = 7 * 86400
# A used link's snapshot a failed removal left is an orphan only this long after the link
# would have expired (a download of it may still be running until then).
REDEEM_GRACE = 3600
GONE = "This link has been used or has expired."


class LinkError(Exception):
    """Why a link cannot be served: ``status`` is 404 (unknown) or 410 (used or expired)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class OneTimeLink(Base):
    __tablename__ = "one_time_links"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    download: Mapped[bool] = mapped_column(Boolean)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    used: Mapped[bool] = mapped_column(Boolean)

    @property
    def expires(self) -> str:
        moment = datetime.fromtimestamp(self.expires_at, UTC).replace(microsecond=0)
        return moment.isoformat().replace("+00:00", "Z")


def validate_link_options(body: dict) -> tuple[bool, int]:
    """``download`` (bool, default false) and ``ttl`` (int seconds, 1..86400, default 300).

    :raises ValueError: naming the bad option.
    """
    download = body.get("download", False)
    ttl = body.get("ttl", DEFAULT_TTL)
    if not isinstance(download, bool):
        raise ValueError("download must be true or false.")
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
        raise ValueError(f"ttl must be a whole number of seconds from 1 to {MAX_TTL}.")
    return download, ttl


def _new_link(
    database: TenantDatabase,
    storage: Storage,
    uid: str,
    filename: str,
    size: int,
    download: bool,
    ttl: int,
    action: str,
    target: str,
) -> OneTimeLink:
    link = OneTimeLink(
        uid=uid,
        filename=filename,
        size=size,
        download=download,
        expires_at=time.time() + ttl,
        used=False,
    )
    try:
        with database.transaction() as session:
            session.add(link)
            audit(session, action, target)
    except BaseException:
        storage.drop_snapshot(uid)
        raise
    clean_up_links(database, storage)
    return link


def link_file(
    database: TenantDatabase,
    storage: Storage,
    sha256: str,
    size: int,
    name: str,
    download: bool,
    ttl: int,
) -> OneTimeLink:
    """A one-time link to the blob of ``sha256`` (a stored file's bytes, ``size`` of them)
    as it is now, served as ``name``.

    :raises InvalidName: :raises FileNotFoundError: the bytes are gone.
    """
    uid = secrets.token_urlsafe(UID_BYTES)
    size = storage.snapshot(sha256, uid, size, name)
    return _new_link(database, storage, uid, name, size, download, ttl, "link.create", name)


def link_built_file(
    database: TenantDatabase,
    storage: Storage,
    temp: Path,
    filename: str,
    download: bool,
    ttl: int,
    action: str,
    target: str,
) -> OneTimeLink:
    """A one-time link to a file built in ``storage.temp_path()`` (e.g. a zip); the audit
    log records ``action`` on ``target`` with it."""
    uid = secrets.token_urlsafe(UID_BYTES)
    size = storage.publish_snapshot(temp, uid)
    return _new_link(database, storage, uid, filename, size, download, ttl, action, target)


def find_live_link(database: TenantDatabase, storage: Storage, uid: str) -> OneTimeLink:
    """The link, if it may still be served (HEAD: does not use it up).

    :raises LinkError: 404 unknown uid, 410 used or expired.
    """
    if UID_PATTERN.fullmatch(uid) is None:
        raise LinkError(404, "No such link.")
    with database.transaction() as session:
        link = session.get(OneTimeLink, uid)
    if link is None:
        raise LinkError(404, "No such link.")
    if link.used or link.expires_at <= time.time():
        raise LinkError(410, GONE)
    return link


def redeem_link(database: TenantDatabase, storage: Storage, uid: str):
    """Use the link up and return ``(link, open binary file of its bytes)``.

    The snapshot is opened before the link is marked used and unlinked after, so the
    winner always gets the bytes and no one else ever does.

    :raises LinkError: 404 unknown uid, 410 used, expired, or lost the race.
    """
    link = find_live_link(database, storage, uid)
    try:
        handle = storage.open_snapshot(uid, link.size)
    except FileNotFoundError:
        raise LinkError(410, GONE) from None
    try:
        won = _use_up(database, uid, link.filename)
    except BaseException:
        handle.close()
        raise
    if not won:
        handle.close()
        raise LinkError(410, GONE)
    quietly(partial(storage.drop_snapshot, uid, after=handle), "a redeemed link's snapshot")
    return link, handle


def _use_up(database: TenantDatabase, uid: str, filename: str) -> bool:
    """Mark the link used if it still may be (recording it); whether this call did."""
    with database.transaction() as session:
        won = session.execute(
            update(OneTimeLink)
            .where(
                OneTimeLink.uid == uid,
                OneTimeLink.used.is_(False),
                OneTimeLink.expires_at > time.time(),
            )
            .values(used=True)
        ).rowcount
        if won:
            audit(session, "link.redeem", filename)
    return bool(won)


def clean_up_links(database: TenantDatabase, storage: Storage) -> int:
    """Drop the snapshots of a batch of expired links and forget links long gone; returns
    how many snapshots were dropped.

    An expired link is marked used once its snapshot is gone, and its row is kept for
    LINK_RETENTION seconds, so it keeps answering 410 (not 404) all that time.
    """
    now = time.time()
    with database.transaction() as session:
        uids = list(
            session.scalars(
                select(OneTimeLink.uid)
                .where(OneTimeLink.used.is_(False), OneTimeLink.expires_at <= now)
                .limit(CLEANUP_BATCH)
            )
        )
        if uids:
            session.execute(update(OneTimeLink).where(OneTimeLink.uid.in_(uids)).values(used=True))
        session.execute(delete(OneTimeLink).where(OneTimeLink.expires_at < now - LINK_RETENTION))
    for uid in uids:
        quietly(partial(storage.drop_snapshot, uid), "an expired link's snapshot")
    return len(uids)


def quietly(remove: Callable[[], object], what: str) -> None:
    """Remove what no record names any more, once the change that freed it is committed:
    a failure (the object store away, say) must not fail that change. What stays is an
    orphan, which the next sweep removes (:func:`drop_orphans`). ``what`` names it in the
    warning; for a snapshot, not by its uid (the capability), though the traceback of a
    failed removal may show its path or key, as the operator's log may."""
    try:
        remove()
    except Exception:
        log.warning("removing %s failed; a later sweep removes it", what, exc_info=True)


def drop_orphans(
    database: TenantDatabase,
    storage: Storage,
    held: list[str],
    named: Callable[[list[str] | None], Select],
    drop: Callable[[str], object],
    batch: int,
) -> int:
    """Remove each of ``held`` (blob or snapshot names) that no record names, as a
    removal that failed leaves them; returns how many. ``named(names)`` selects those of
    ``names`` that records still name (of all, with None). Listed without the lock; each
    candidate is looked at again under the storage lock, under which records and what they
    name are made together."""
    if not held:
        return 0
    with database.transaction() as session:
        kept = set(session.scalars(named(None)))
    candidates = [name for name in held if name not in kept]
    removed = 0
    for start in range(0, len(candidates), batch):
        names = candidates[start : start + batch]
        with storage.lock():
            with database.transaction() as session:
                kept = set(session.scalars(named(names)))
            for name in names:
                if name not in kept:
                    drop(name)
                    removed += 1
    return removed


def _kept():
    """Links whose snapshot stays: not used yet, or used within the last
    :data:`REDEEM_GRACE` seconds of their time to live (a download may still be reading
    it; its response drops it when closed)."""
    return or_(OneTimeLink.used.is_(False), OneTimeLink.expires_at > time.time() - REDEEM_GRACE)


def _kept_snapshots(uids: list[str] | None) -> Select:
    query = select(OneTimeLink.uid).where(_kept())
    return query if uids is None else query.where(OneTimeLink.uid.in_(uids))


def drop_orphan_snapshots(database: TenantDatabase, storage: Storage) -> int:
    """Remove the snapshots (and zips) of links used, expired or forgotten (left where a
    removal failed); returns how many."""
    held = storage.snapshot_names()
    return drop_orphans(
        database, storage, held, _kept_snapshots, storage.drop_snapshot, CLEANUP_BATCH
    )


def sweep(database: TenantDatabase, storage: Storage) -> int:
    """Drop the snapshots (and dataset zips) of every expired link now; returns how many.
    Used links dropped theirs when they were redeemed."""
    total = 0
    while True:
        dropped = clean_up_links(database, storage)
        total += dropped
        if dropped < CLEANUP_BATCH:
            return total + drop_orphan_snapshots(database, storage)
