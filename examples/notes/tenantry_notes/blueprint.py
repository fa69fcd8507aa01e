from flask import Blueprint

from tenantry.endpoint import TenantApi
from tenantry_notes.resources import AllNotes, NoteItem, NoteList, NoteSummary

blueprint = Blueprint("notes", __name__)
api = TenantApi(blueprint)
api.add_resource(NoteList, "/notes")
# Bounded: a larger id is a 404, not a number the database cannot hold.
api.add_resource(NoteItem, "/notes/<int(max=2147483647):note_id>")
api.add_resource(AllNotes, "/notes/all")
api.add_resource(NoteSummary, "/notes/summary")
