"""The notes module's own tests, on tenantry.testing's fixtures (a module author's view)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from tenantry.testing import isolation_problems
from tenantry_notes import models, schedules
from tenantry_notes.jobs import purge_old_notes, summarise_notes
from tenantry_notes.resources import Note, Notes, NotesPerUser


def test_notes_are_per_user(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("landing", "notes"))
    alice, bob = shop.headers("user"), shop.headers("user")
    created = shop.client.post("/notes", json={"text": "buy milk"}, headers=alice)
    assert created.status_code == 201
    note = created.json
    assert shop.client.get("/notes", headers=alice).json["notes"] == [note]
    assert shop.client.get("/notes", headers=bob).json["notes"] == []
    assert shop.client.get(f"/notes/{note['id']}", headers=bob).status_code == 404
    assert shop.client.delete(f"/notes/{note['id']}", headers=bob).status_code == 404
    assert shop.client.delete(f"/notes/{note['id']}", headers=alice).status_code == 204
    assert shop.client.get(f"/notes/{note['id']}", headers=alice).status_code == 404


def test_a_note_id_past_any_note_is_a_404(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",))
    user = shop.headers("user")
    for note_id in ("99999999999999999999", "2147483648", "-1", "x"):
        response = shop.client.get(f"/notes/{note_id}", headers=user)
        assert (response.status_code, response.json["error"]) == (404, "not_found")


def test_notes_need_a_token(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",))
    response = shop.client.get("/notes")
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_summary_is_admin_only(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",))
    user = shop.headers("user")
    shop.client.post("/notes", json={"text": "one"}, headers=user)
    assert shop.client.get("/notes/all", headers=user).status_code == 403
    summary = shop.client.get("/notes/all", headers=shop.headers("admin"))
    assert summary.status_code == 200
    assert list(summary.json["users"].values()) == [1]


def test_a_tenant_setting_overrides_the_module_default(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",), settings={"NOTES_MAX_PER_USER": 2})
    user = shop.headers("user")
    statuses = [
        shop.client.post("/notes", json={"text": f"n{i}"}, headers=user).status_code
        for i in range(3)
    ]
    assert statuses == [201, 201, 409]


def test_bad_bodies_are_json_400s(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",), settings={"NOTES_MAX_LENGTH": 5})
    user = shop.headers("user")
    for body in ({"text": ""}, {"text": 5}, {"text": "too long"}, {"text": "   "}, {}):
        response = shop.client.post("/notes", json=body, headers=user)
        assert (response.status_code, response.json["error"]) == (400, "bad_request")
        assert [error["field"] for error in response.json["fields"]] == ["text"], body
        assert "text" in response.json["message"]
    assert shop.client.get("/notes", headers=user).json["notes"] == []
    broken = shop.client.post("/notes", data=b"{nope", headers=user)
    assert broken.status_code == 400


def test_notes_of_one_tenant_are_not_seen_by_another(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",))
    other = tenantry_tenant("other", blueprints=("notes",))
    shop_user = shop.headers("user", username="sam")
    other_user = other.headers("user", username="sam")  # same name, same user id
    shop.client.post("/notes", json={"text": "shop secret"}, headers=shop_user)
    assert other.client.get("/notes", headers=other_user).json["notes"] == []
    # A token of shop is no token at all at other.
    assert other.client.get("/notes", headers=shop_user).status_code == 401


def test_a_tenant_without_the_module_has_none_of_its_routes(tenantry_tenant):
    plain = tenantry_tenant("plain", blueprints=("landing",))
    assert plain.client.get("/notes", headers=plain.headers("admin")).status_code == 404
    paths = plain.client.get("/openapi.json").json["paths"]
    assert not any(path.startswith("/notes") for path in paths)


def test_the_routes_are_in_the_openapi_document(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",))
    paths = shop.client.get("/openapi.json").json["paths"]
    assert set(paths["/notes"]) == {"get", "post"}
    assert set(paths["/notes/{note_id}"]) == {"get", "delete"}
    assert set(paths["/notes/all"]) == {"get"}


def test_the_module_keeps_no_tenant_state(tenantry_home):
    writes = [("POST", "/notes", {"text": "hello"}), ("GET", "/notes/1", None)]
    jobs = [(summarise_notes, (1,))]  # the schedule's purge is run without being named
    assert isolation_problems(tenantry_home, ("landing", "notes"), requests=writes, jobs=jobs) == []


def test_answers_are_what_the_openapi_document_declares(tenantry_tenant):
    shop = tenantry_tenant("shop", blueprints=("notes",))
    user = shop.headers("user")
    created = shop.client.post("/notes", json={"text": "milk"}, headers=user).json
    assert Note.model_validate(created).text == "milk"
    Notes.model_validate(shop.client.get("/notes", headers=user).json)
    NotesPerUser.model_validate(shop.client.get("/notes/all", headers=shop.headers("admin")).json)
    spec = shop.client.get("/openapi.json").json
    post = spec["paths"]["/notes"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["text"] and body["properties"]["text"]["minLength"] == 1
    listed = spec["paths"]["/notes"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["properties"]["notes"]["items"] == {"$ref": "#/components/schemas/Note"}
    assert spec["components"]["schemas"]["Note"]["required"] == ["id", "text", "created"]
    assert "400" in post["responses"]


def test_a_summary_runs_as_a_job_of_the_tenant(tenantry_tenant):
    """POST /notes/summary queues the job; run_jobs runs it as a worker would; GET /jobs/<id>
    shows its progress and result to the user who asked, and to no one at another tenant."""
    shop = tenantry_tenant("shop", blueprints=("notes",))
    other = tenantry_tenant("other", blueprints=("notes",))
    user = shop.headers("user", username="sam")
    for text in ("buy milk", "call the bank today"):
        shop.client.post("/notes", json={"text": text}, headers=user)
    queued = shop.client.post("/notes/summary", json={}, headers=user)
    assert queued.status_code == 202
    job_id = queued.json["id"]
    # Asked again while it waits: the same job (its key), not a second one.
    assert shop.client.post("/notes/summary", json={}, headers=user).json["id"] == job_id
    (ran,) = shop.run_jobs()
    assert (ran["id"], ran["state"]) == (job_id, "succeeded")
    shown = shop.client.get(f"/jobs/{job_id}", headers=user).json
    assert shown["result"] == {"notes": 2, "words": 6}
    assert shown["progress"] == {"done": 2, "total": 2}
    assert other.client.get(f"/jobs/{job_id}", headers=other.headers("admin")).status_code == 404


def test_the_purge_schedule_removes_only_old_notes(tenantry_tenant):
    assert schedules["purge"]["job"] is purge_old_notes
    shop = tenantry_tenant("shop", blueprints=("notes",), settings={"NOTES_KEEP_DAYS": 1})
    user = shop.headers("user")
    for text in ("old", "kept"):
        shop.client.post("/notes", json={"text": text}, headers=user)
    with shop.app.extensions["tenantry.db"].transaction() as session:
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        session.execute(
            update(models.Note).where(models.Note.text == "old").values(created=two_days_ago)
        )
    with shop.app.app_context():
        assert purge_old_notes() == {"purged": 1}  # a job is a plain function in its app
    assert [n["text"] for n in shop.client.get("/notes", headers=user).json["notes"]] == ["kept"]


def test_a_nul_character_is_refused_like_any_bad_text(tenantry_tenant):
    """json_object refuses NUL in any string for every module: PostgreSQL cannot store
    it, and SQLite would; the two backends answer alike."""
    shop = tenantry_tenant("shop", blueprints=("notes",))
    user = shop.headers("user")
    response = shop.client.post("/notes", json={"text": "buy\x00milk"}, headers=user)
    assert (response.status_code, response.json["error"]) == (400, "bad_request")
    assert shop.client.get("/notes", headers=user).json["notes"] == []
