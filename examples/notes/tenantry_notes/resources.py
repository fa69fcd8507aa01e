"""Thin resources: read the request, call the model, answer JSON."""

from werkzeug.exceptions import BadRequest, Conflict, NotFound

from tenantry.endpoint import (
    INTEGER,
    STRING,
    TenantResource,
    auth_required,
    current_user,
    json_object,
    no_content,
    operation,
    schema_object,
)
from tenantry_notes.models import (
    NoteLimitReached,
    add_note,
    delete_note,
    find_note,
    notes_of,
    notes_per_owner,
)

NOTE = schema_object({"id": INTEGER, "text": STRING, "created": STRING}, ("id", "text", "created"))
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
        "get": operation(
            "Your notes, oldest first",
            {200: schema_object({"notes": {"type": "array", "items": NOTE}}, ("notes",))},
        ),
        "post": operation(
            "Write a note",
            {201: NOTE},
            errors=(400, 409),
            body=schema_object({"text": STRING}, ("text",)),
        ),
    }

    def get(self):
        return {"notes": [note.as_dict() for note in notes_of(self.database, current_user().id)]}

    def post(self):
        text = json_object().get("text")
        limit = self.config["NOTES_MAX_LENGTH"]
        if not isinstance(text, str) or not text.strip() or len(text) > limit:
            raise BadRequest(f"text must be a non-empty string of at most {limit} characters.")
        try:
            note = add_note(
                self.database, current_user().id, text, self.config["NOTES_MAX_PER_USER"]
            )
        except NoteLimitReached as exc:
            raise Conflict(str(exc)) from None
        return note.as_dict(), 201


class NoteItem(NoteResource):
    openapi = {
        "get": operation("One of your notes", {200: NOTE}, errors=(404,), parameters=(NOTE_ID,)),
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
            "How many notes each user has (admin only)",
            {200: schema_object({"users": {"type": "object"}}, ("users",))},
            errors=(403,),
        )
    }

    def get(self):
        counts = notes_per_owner(self.database)
        return {"users": {str(owner): count for owner, count in sorted(counts.items())}}
