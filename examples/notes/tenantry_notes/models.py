"""Notes: each user's own, in the tenant's own database. No Flask here."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, Text, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.endpoint import Base, TenantDatabase


class NoteLimitReached(Exception):
    """The user has as many notes as the tenant's NOTES_MAX_PER_USER allows."""


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer, index=True)
    text: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def as_dict(self) -> dict:
        created = self.created if self.created.tzinfo else self.created.replace(tzinfo=UTC)
        return {
            "id": self.id,
            "text": self.text,
            "created": created.isoformat().replace("+00:00", "Z"),
        }


def notes_of(database: TenantDatabase, owner_id: int) -> list[Note]:
    with database.transaction() as session:
        query = select(Note).where(Note.owner_id == owner_id).order_by(Note.id)
        return list(session.scalars(query))


def add_note(database: TenantDatabase, owner_id: int, text: str, limit: int) -> Note:
    """:raises NoteLimitReached: the owner already has ``limit`` notes."""
    with database.transaction() as session:
        count = session.scalar(select(func.count()).where(Note.owner_id == owner_id))
        if count >= limit:
            raise NoteLimitReached(f"You have {count} notes, the most this tenant allows.")
        note = Note(owner_id=owner_id, text=text, created=datetime.now(UTC))
        session.add(note)
        session.flush()
        return note


def find_note(database: TenantDatabase, owner_id: int, note_id: int) -> Note | None:
    """The owner's note of that id (another user's note is as good as missing)."""
    with database.transaction() as session:
        note = session.get(Note, note_id)
        return note if note is not None and note.owner_id == owner_id else None


def delete_note(database: TenantDatabase, owner_id: int, note_id: int) -> bool:
    with database.transaction() as session:
        query = delete(Note).where(Note.id == note_id, Note.owner_id == owner_id)
        return bool(session.execute(query).rowcount)


def notes_per_owner(database: TenantDatabase) -> dict[int, int]:
    with database.transaction() as session:
        query = select(Note.owner_id, func.count()).group_by(Note.owner_id)
        return {owner: count for owner, count in session.execute(query)}


def purge_notes_before(database: TenantDatabase, cutoff: datetime) -> int:
    """Remove every note written before ``cutoff``; returns how many went."""
    with database.transaction() as session:
        return session.execute(delete(Note).where(Note.created < cutoff)).rowcount
