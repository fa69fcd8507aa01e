"""The module's background jobs: work that should not hold a request open.

A job runs for the tenant whose request (or schedule) queued it: ``current_tenant`` is that
tenant, with its own database, as in its requests. Arguments and results are JSON values.
"""

from datetime import UTC, datetime, timedelta

from tenantry.endpoint import current_job, current_tenant, job
from tenantry_notes.models import notes_of, purge_notes_before


@job(retries=2)
def summarise_notes(owner_id):
    """Count a user's notes and words, reporting progress as it goes (``GET /jobs/<id>``)."""
    notes = notes_of(current_tenant.database, owner_id)
    words = 0
    for done, note in enumerate(notes, 1):
        if current_job().cancelled:  # DELETE /jobs/<id> asked it to stop
            return None
        words += len(note.text.split())
        current_job().progress(done, len(notes))
    return {"notes": len(notes), "words": words}


@job
def purge_old_notes():
    """Remove notes older than the tenant's NOTES_KEEP_DAYS (run by the module's schedule)."""
    cutoff = datetime.now(UTC) - timedelta(days=current_tenant.config["NOTES_KEEP_DAYS"])
    return {"purged": purge_notes_before(current_tenant.database, cutoff)}
