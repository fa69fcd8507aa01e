from flask import Blueprint

from tenantry.endpoint import TenantApi
from tenantry_notes.resources import AllNotes, NoteItem, NoteList

blueprint = Blueprint("notes", __name__)
api = TenantApi(blueprint)
api.add_resource(NoteList, "/notes")
api.add_resource(NoteItem, "/notes/<int:note_id>")
api.add_resource(AllNotes, "/notes/all")
