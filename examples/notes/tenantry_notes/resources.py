"""Thin resources: read the request, call the model, answer JSON.

Each body and answer is declared once, as a pydantic model: ``json_object(NoteIn)``
validates the request with it (a 400 naming the failing field), and ``operation`` documents
it in the tenant's /openapi.json.
"""

from datetime import datetime

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from werkzeug.exceptions import Conflict, NotFound

from tenantry.endpoint import (
    INTEGER,
    TenantResource,
    auth_required,
    current_user,
    json_object,
    no_content,
    operation,
)
from tenantry_notes.jobs import summarise_notes
from tenantry_notes.models import (
    NoteLimitReached,
    add_note,
    delete_note,
    find_note,
    notes_of,
    notes_per_owner,
)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, description="Not blank; NOTES_MAX_LENGTH at most")

    @field_validator("text")
    @classmethod
    def within_the_tenants_limits(cls, text: str, info: ValidationInfo) -> str:
        limit = info.context["tenant"].config["NOTES_MAX_LENGTH"]
        if not text.strip() or len(text) > limit:
            raise ValueError(f"must be a non-empty string of at most {limit} characters")
        return text


class Note(BaseModel):
    id: int
    text: str
    created: datetime


class Notes(BaseModel):
    notes: list[Note]


class NotesPerUser(BaseModel):
    users: dict[str, int]


class Queued(BaseModel):
    id: str = Field(description="The job's id: GET /jobs/{job_id} shows how it goes")


NOTE_ID = {
    "name": "note_id",
    "in": "path",
    "required": True,
    "schema": {**INTEGER, "minimum": 0, "maximum": 2**31 - 1},
}


class NoteResource(TenantResource):
    method_decorators = [auth_required()]


class NoteList(NoteResource):
    openapi = {
        "get": operation("Your notes, oldest first", {200: Notes}),
        "post": operation("Write a note", {201: Note}, errors=(409,), body=NoteIn),
    }

    def get(self):
        return {"notes": [note.as_dict() for note in notes_of(self.database, current_user().id)]}

    def post(self):
        text = json_object(NoteIn).text
        try:
            note = add_note(
                self.database, current_user().id, text, self.config["NOTES_MAX_PER_USER"]
            )
        except NoteLimitReached as exc:
            raise Conflict(str(exc)) from None
        return note.as_dict(), 201


class NoteItem(NoteResource):
    openapi = {
        "get": operation("One of your notes", {200: Note}, errors=(404,), parameters=(NOTE_ID,)),
        "delete": operation(
            "Delete one of your notes", {204: None}, errors=(404,), parameters=(NOTE_ID,)
        ),
    }

    def get(self, note_id):
        note = find_note(self.database, current_user().id, note_id)
        if note is None:
            raise NotFound(f"No such note: {note_id}")
        return note.as_dict()

    def delete(self, note_id):
        if not delete_note(self.database, current_user().id, note_id):
            raise NotFound(f"No such note: {note_id}")
        return no_content()


class AllNotes(TenantResource):
    method_decorators = [auth_required("admin")]
    openapi = {
        "get": operation(
            "How many notes each user has (admin only)", {200: NotesPerUser}, errors=(403,)
        )
    }

    def get(self):
        counts = notes_per_owner(self.database)
        return {"users": {str(owner): count for owner, count in sorted(counts.items())}}


class NoteSummary(NoteResource):
    openapi = {
        "post": operation(
            "Count your notes and words in the background", {202: Queued}, errors=(429,)
        )
    }

    def post(self):
        # One summary per user at a time: asking again returns the unfinished one's id.
        user_id = current_user().id
        job_id = self.tenant.jobs.enqueue(summarise_notes, user_id, key=f"summary-{user_id}")
        return {"id": job_id}, 202
