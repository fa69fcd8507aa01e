"""The audit log: every action of the API and of the operator's commands,
hash-chained in the tenant's own database, in the same transaction as the change, readable
only by the tenant's admins, and never holding a secret."""

from __future__ import annotations

import json
import os
import pwd
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from tenantry.data.db import tenant_database
from tenantry.ops.backup import backup_tenant
from tenantry.ops.restore import restore_tenant
from tests.conftest import bearer, refuse_writes

ADMIN_PASSWORD = "admin-secret-pass-1"
USER_PASSWORD = "user-secret-pass-1"
OPERATOR = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


@pytest.fixture
def admin(acme, add_user, login):
    add_user(acme, "root", ADMIN_PASSWORD, roles=("admin",))
    return bearer(login(acme, "root", ADMIN_PASSWORD))


def audit_entries(client, headers, slug="acme", **query) -> list[dict]:
    response = client.get(f"/{slug}/audit", query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]


def actions(entries: list[dict]) -> list[str]:
    return [entry["action"] for entry in entries]


def raw_sql(home, slug: str, statement: str, table: str = "audit_log") -> None:
    """Run ``statement`` on the tenant's database as someone with database access would
    (``{log}`` names ``table``, by default its audit log)."""
    database = tenant_database(home, slug)
    table = f'"{database.schema}".{table}' if database.is_postgres else table
    try:
        with database.engine.begin() as connection:
            connection.execute(text(statement.format(log=table)))
    finally:
        database.dispose()


def test_every_api_action_is_recorded_with_who_and_from_where(client, admin, login):
    client.post(
        "/acme/auth/login",
        json={"username": "root", "password": "wrong-password"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    created = client.post(
        "/acme/users",
        json={"username": "bob", "password": USER_PASSWORD, "roles": ["user"]},
        headers=admin,
    )
    assert created.status_code == 201
    bob = bearer(login("acme", "bob", USER_PASSWORD))
    put = client.put("/acme/files/report.csv", data=b"a,b\n", headers=bob)
    assert put.status_code == 201
    link = client.post("/acme/files/report.csv/link", headers=bob).json["addr"]
    assert client.get(link).status_code == 200
    dataset = {"name": "q3", "files": ["report.csv"]}
    assert client.post("/acme/api/datasets", json=dataset, headers=admin).status_code == 201
    download = client.post("/acme/api/datasets/download", json={"datasets": ["q3"]}, headers=bob)
    assert download.status_code == 201
    assert client.delete("/acme/api/datasets/q3", headers=admin).status_code == 204
    assert client.delete("/acme/files/report.csv", headers=bob).status_code == 204
    assert client.post("/acme/auth/logout", headers=bob).status_code == 204
    disabled = client.patch("/acme/users/bob", json={"active": False}, headers=admin)
    assert disabled.status_code == 200

    entries = audit_entries(client, admin)
    assert actions(entries) == [
        "user.disable",
        "auth.logout",
        "file.delete",
        "dataset.delete",
        "dataset.download",
        "dataset.create",
        "link.redeem",
        "link.create",
        "file.put",
        "auth.login",
        "user.create",
        "auth.login_failed",
        "auth.login",
        "user.create",  # root, by the test's add_user: not in a request, so the operator
    ]
    by_action = {entry["action"]: entry for entry in reversed(entries)}  # the newest of each
    assert by_action["auth.login_failed"] | {"id": 0, "time": "", "request_id": ""} == {
        "id": 0,
        "time": "",
        "actor": "anonymous",
        "action": "auth.login_failed",
        "target": "root",
        "outcome": "failure",
        "request_id": "",
        "remote_addr": "192.0.2.7",
    }
    assert by_action["auth.login"]["actor"] == "bob"
    assert by_action["user.create"]["actor"] == "root"
    assert by_action["user.create"]["target"] == "bob"
    assert by_action["file.put"]["actor"] == "bob"
    assert by_action["file.put"]["target"] == "report.csv"
    assert by_action["link.create"]["target"] == "report.csv"
    assert by_action["link.redeem"]["actor"] == "anonymous"
    assert by_action["dataset.download"]["target"] == "q3"
    assert by_action["user.disable"] | {"id": 0, "time": ""} == by_action["user.disable"] | {
        "id": 0,
        "time": "",
        "actor": "root",
        "target": "bob",
        "outcome": "success",
    }
    assert [entry["id"] for entry in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert all(entry["time"].endswith("Z") for entry in entries)


def test_an_entry_names_the_request_that_made_it(client, admin):
    response = client.put(
        "/acme/files/a.txt", data=b"x", headers={**admin, "X-Request-ID": "req-audit-1"}
    )
    assert response.headers["X-Request-ID"] == "req-audit-1"
    (entry,) = audit_entries(client, admin, action="file.put")
    assert entry["request_id"] == "req-audit-1"


def test_operator_commands_are_recorded_as_the_os_user(home, acme, tenantry, tmp_path):
    assert tenantry("users", "add", "acme", "root", "--role", "admin", "--password-stdin",
                    input=ADMIN_PASSWORD + "\n").exit_code == 0  # fmt: skip
    for command in (
        ["tenants", "rotate-secret", "acme"],
        ["tenants", "disable", "acme"],
        ["tenants", "enable", "acme"],
        ["tenants", "down", "acme"],
        ["tenants", "up", "acme"],
        ["tenants", "backup", "acme", "--out", str(tmp_path)],
        ["users", "disable", "acme", "root"],
        ["users", "enable", "acme", "root"],
    ):
        result = tenantry(*command)
        assert result.exit_code == 0, result.output
    archive = next(tmp_path.glob("acme-*.tar.gz"))
    assert tenantry("tenants", "restore", str(archive), "--force").exit_code == 0

    listed = tenantry("audit", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.output)
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        (OPERATOR, "user.add", "root"),
        (OPERATOR, "tenant.rotate_secret", "acme"),
        (OPERATOR, "tenant.disable", "acme"),
        (OPERATOR, "tenant.enable", "acme"),
        (OPERATOR, "tenant.down", "acme"),
        (OPERATOR, "tenant.up", "acme"),
        # What the archive holds, then the restore: the backup's own entry and what
        # came after it were replaced with the tenant.
        (OPERATOR, "tenant.restore", archive.name),
    ]
    assert all(e["request_id"] is None and e["remote_addr"] is None for e in entries)
    assert tenantry("audit", "acme", "--verify").exit_code == 0


def test_the_backup_entry_follows_the_archive(home, acme, tmp_path):
    archive = backup_tenant(home, acme, tmp_path)
    database = tenant_database(home, acme, read_only=True)
    try:
        from tenantry.data.audit import all_entries

        (entry,) = list(all_entries(database))
    finally:
        database.dispose()
    assert (entry.action, entry.target) == ("tenant.backup", os.path.basename(archive))


def test_a_restored_log_still_verifies_and_keeps_its_entries(
    home, client, admin, tenantry, tmp_path
):
    client.put("/acme/files/a.txt", data=b"x", headers=admin)
    archive = backup_tenant(home, "acme", tmp_path)
    restored = restore_tenant(home, archive, as_slug="copy")
    assert restored.slug == "copy"
    listed = json.loads(tenantry("audit", "copy", "--json").output)
    assert actions(listed) == ["user.create", "auth.login", "file.put", "tenant.restore"]
    verified = tenantry("audit", "copy", "--verify")
    assert verified.exit_code == 0, verified.output
    assert "4 entries, the chain holds" in verified.output


def test_a_failed_action_records_nothing(client, admin):
    missing = client.post(
        "/acme/api/datasets", json={"name": "q", "files": ["nope"]}, headers=admin
    )
    assert missing.status_code == 400
    assert client.delete("/acme/files/nope", headers=admin).status_code == 404
    assert client.get("/acme/cached-file", query_string={"uid": "x" * 43}).status_code == 404
    assert actions(audit_entries(client, admin)) == ["auth.login", "user.create"]


def test_an_action_whose_entry_cannot_be_written_does_not_happen(
    home, client, admin, tenantry, caplog
):
    refuse_writes(home, "acme", "audit_log")
    put = client.put("/acme/files/a.txt", data=b"x", headers=admin)
    assert put.status_code >= 500
    assert put.json["error"]  # the error shape, no traceback
    created = client.post(
        "/acme/users", json={"username": "bob", "password": USER_PASSWORD}, headers=admin
    )
    assert created.status_code >= 500
    assert client.get("/acme/files", headers=admin).json["files"] == []
    assert [
        user["username"] for user in client.get("/acme/users", headers=admin).json["users"]
    ] == ["root"]
    # An operator's emergency action is not refused for want of a log: done, and said.
    disabled = tenantry("tenants", "disable", "acme")
    assert disabled.exit_code == 0, disabled.output
    assert "tenant.disable of acme is not in its audit log" in caplog.text
    assert not home.is_enabled("acme")


def test_only_the_tenants_admins_read_its_log(client, admin, globex, add_user, login):
    add_user("acme", "reader")
    reader = bearer(login("acme", "reader"))
    add_user(globex, "boss", roles=("admin",))
    globex_admin = bearer(login(globex, "boss"))
    assert client.get("/acme/audit", headers=reader).status_code == 403
    assert client.get("/acme/audit", headers=globex_admin).status_code == 401
    assert client.get("/acme/audit").status_code == 401
    assert client.get("/acme/audit", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    # What happened at acme is not in globex's log, and the reverse.
    assert actions(audit_entries(client, globex_admin, slug="globex")) == [
        "auth.login",
        "user.create",
    ]
    assert {e["actor"] for e in audit_entries(client, admin)} == {"root", "reader", OPERATOR}


def test_filters_and_paging(client, admin):
    for name in ("a", "b", "c"):
        client.put(f"/acme/files/{name}", data=b"x", headers=admin)
    everything = client.get("/acme/audit", headers=admin).json
    assert everything["total"] == 5
    puts = client.get("/acme/audit?action=file.put&limit=2", headers=admin).json
    assert puts["total"] == 3
    assert [e["target"] for e in puts["data"]] == ["c", "b"]
    rest = client.get("/acme/audit?action=file.put&limit=2&offset=2", headers=admin).json
    assert [e["target"] for e in rest["data"]] == ["a"]
    assert client.get("/acme/audit?actor=nobody", headers=admin).json == {"data": [], "total": 0}
    assert client.get("/acme/audit?actor=root", headers=admin).json["total"] == 4
    assert client.get(f"/acme/audit?actor={OPERATOR}", headers=admin).json["total"] == 1
    since = everything["data"][1]["time"]  # the second newest, inclusive
    assert [e["target"] for e in audit_entries(client, admin, since=since)] == ["c", "b"]
    offset = since.replace("Z", "+00:00").replace("T", " ")
    assert len(audit_entries(client, admin, since=offset)) == 2
    assert audit_entries(client, admin, since="2999-01-01") == []
    assert len(audit_entries(client, admin, since="0999-01-01")) == 5  # years before 1000 too


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "limit=x", "offset=-1", "since=yesterday", "action=a%00b",
     "actor=" + "x" * 300, "since=0001-01-01T00:00:00%2B01:00", "since=9999-12-31T23:59:59-01:00"],
)  # fmt: skip
def test_bad_filters_are_400(client, admin, query):
    response = client.get(f"/acme/audit?{query}", headers=admin)
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"


def test_no_entry_holds_a_password_token_or_secret(home, client, admin, login, tenantry):
    client.post("/acme/auth/login", json={"username": "root", "password": "guess-" + USER_PASSWORD})
    client.post("/acme/users", json={"username": "bob", "password": USER_PASSWORD}, headers=admin)
    token = login("acme", "bob", USER_PASSWORD)
    client.patch("/acme/users/bob", json={"password": "new-" + USER_PASSWORD}, headers=admin)
    client.put("/acme/files/f.txt", data=b"x", headers=admin)
    url = client.post("/acme/files/f.txt/link", headers=admin).json["addr"]
    client.get(url)
    client.post("/acme/auth/logout", headers=admin)
    assert tenantry("tenants", "rotate-secret", "acme").exit_code == 0
    secrets = [
        ADMIN_PASSWORD,
        USER_PASSWORD,
        token,
        admin["Authorization"].split()[1],
        url.split("uid=")[1],
        home.env_file("acme").read_text().split("SECRET_KEY=")[1].split()[0].strip("'\""),
    ]
    dumped = tenantry("audit", "acme", "--json").output
    assert len(json.loads(dumped)) >= 8
    for secret in secrets:
        for part in (secret, secret[:16], secret[-16:]):
            assert part not in dumped


@pytest.mark.parametrize(
    ("tampering", "broken", "reason"),
    [
        ("UPDATE {log} SET target = 'other' WHERE id = 2", 2, "content does not match"),
        ("DELETE FROM {log} WHERE id = 2", 3, "deleted or inserted"),
        ("DELETE FROM {log} WHERE id = 1", 2, "deleted or inserted"),
        (
            "INSERT INTO {log} (id, time, actor, action, target, outcome, prev_hash, hash) "
            "SELECT 100, time, actor, action, 'x', outcome, prev_hash, hash FROM {log} "
            "WHERE id = 3",
            100,
            "deleted or inserted",
        ),
    ],
)
def test_verify_names_the_first_entry_that_was_tampered_with(
    home, client, admin, tenantry, tampering, broken, reason
):
    for name in ("a", "b", "c"):
        client.put(f"/acme/files/{name}", data=b"x", headers=admin)
    assert tenantry("audit", "acme", "--verify").exit_code == 0
    raw_sql(home, "acme", tampering)
    verified = tenantry("audit", "acme", "--verify")
    assert verified.exit_code == 1
    assert f"entry {broken} breaks the chain" in verified.output
    assert reason in verified.output
    as_json = tenantry("audit", "acme", "--verify", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)["broken"] == broken


def test_a_row_inserted_with_a_recomputed_hash_still_breaks_the_next(home, client, admin, tenantry):
    from tenantry.data.audit import GENESIS, content_hash

    client.put("/acme/files/a", data=b"x", headers=admin)
    forged = {
        "id": 0,
        "time": "2000-01-01T00:00:00.000000Z",
        "actor": "mallory",
        "action": "file.put",
        "target": "forged",
        "outcome": "success",
        "request_id": None,
        "remote_addr": None,
    }
    digest = content_hash(GENESIS, forged)
    raw_sql(
        home,
        "acme",
        "INSERT INTO {log} (id, time, actor, action, target, outcome, prev_hash, hash) VALUES "  # noqa: S608
        f"(0, '{forged['time']}', 'mallory', 'file.put', 'forged', 'success', '{GENESIS}', "
        f"'{digest}')",
    )
    verified = tenantry("audit", "acme", "--verify")
    assert verified.exit_code == 1
    assert "entry 1 breaks the chain" in verified.output


def test_the_log_lists_oldest_first_with_control_characters_escaped(home, client, admin, tenantry):
    client.put("/acme/files/a.txt", data=b"x", headers=admin)
    # No route lets control characters into an entry; a hand-edited row must not reach
    # the operator's terminal as escape sequences either.
    char = "chr" if home.database_url else "char"
    raw_sql(
        home,
        "acme",
        f"UPDATE {{log}} SET target = 'a' || {char}(27) || '[2J' || {char}(9) || 'b' WHERE id = 3",  # noqa: S608
    )
    listed = tenantry("audit", "acme")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert [line.split("\t")[3] for line in lines] == ["user.create", "auth.login", "file.put"]
    assert lines[2].split("\t")[4] == "a\\x1b[2J\\tb"
    assert "\x1b" not in listed.output


def as_before_the_log(home, slug: str) -> None:
    """Make the tenant's database look like one of a tenantry before the audit log."""
    raw_sql(home, slug, "DROP TABLE {log}")
    raw_sql(home, slug, "UPDATE {log} SET version_num = '0006'", table="alembic_version")


def assert_still_before_the_log(home, slug: str) -> None:
    database = tenant_database(home, slug, read_only=True)
    try:
        assert database.current_revision() == "0006"
        assert "audit_log" not in database.table_names()
    finally:
        database.dispose()


def test_a_tenant_without_a_log_yet_lists_nothing(home, acme, tenantry):
    as_before_the_log(home, acme)
    assert tenantry("audit", "acme").output == ""
    assert "0 entries" in tenantry("audit", "acme", "--verify").output
    assert tenantry("audit", "nope").exit_code == 2


def test_a_log_dropped_from_a_database_that_had_one_fails_verify(home, acme, tenantry):
    raw_sql(home, acme, "DROP TABLE {log}")
    verified = tenantry("audit", "acme", "--verify")
    assert verified.exit_code == 1
    assert "has no audit_log table" in verified.output
    assert tenantry("audit", "acme").exit_code == 1


def test_a_lost_or_unreadable_database_fails_verify_without_a_traceback(home, acme, tenantry):
    if home.database_url:
        from tests.conftest import drop_database

        drop_database(home, acme)
        said = "has no database"
    else:
        with open(home.instance_dir(acme) / "tenant.db", "r+b") as database:
            database.write(b"not a database!!")
        said = "cannot be read"
    verified = tenantry("audit", "acme", "--verify")
    assert verified.exit_code == 1
    assert said in verified.output
    assert "Traceback" not in verified.output
    stats = tenantry("tenants", "stats", "acme")
    assert stats.exit_code == 1
    assert "ERROR: " in stats.output


def test_a_log_cut_short_is_caught_by_the_head_kept_from_before(home, client, admin, tenantry):
    client.put("/acme/files/a", data=b"x", headers=admin)
    before = tenantry("audit", "acme", "--verify").output
    head = before.split("(head ")[1].rstrip(")\n")
    assert tenantry("audit", "acme", "--verify", "--expect-head", head).exit_code == 0
    client.put("/acme/files/b", data=b"x", headers=admin)
    assert tenantry("audit", "acme", "--verify", "--expect-head", head).exit_code == 0
    raw_sql(home, "acme", "DELETE FROM {log} WHERE action = 'file.put'")
    assert tenantry("audit", "acme", "--verify").exit_code == 0  # the chain alone holds
    cut = tenantry("audit", "acme", "--verify", "--expect-head", head)
    assert cut.exit_code == 1
    assert "cut short or rewritten" in cut.output
    assert tenantry("audit", "acme", "--expect-head", head).exit_code == 2


def test_operator_actions_go_on_when_the_log_cannot_take_them(
    home, acme, tenantry, tmp_path, caplog
):
    as_before_the_log(home, acme)
    for command in (["tenants", "down", acme], ["tenants", "disable", acme],
                    ["tenants", "rotate-secret", acme],
                    ["tenants", "backup", acme, "--out", str(tmp_path)]):  # fmt: skip
        caplog.clear()
        result = tenantry(*command)
        assert result.exit_code == 0, result.output
        assert f"of {acme} is not in its audit log: its database has no audit log" in caplog.text
    assert home.maintenance(acme) is not None and not home.is_enabled(acme)
    assert list(tmp_path.glob("acme-*.tar.gz"))
    # ...and neither migrated nor made the log on the way
    assert_still_before_the_log(home, acme)


def test_a_tenant_that_lost_its_database_gets_none_from_an_operator_action(
    home, acme, tenantry, caplog
):
    from tests.conftest import drop_database

    drop_database(home, acme)
    result = tenantry("tenants", "down", acme)
    assert result.exit_code == 0
    assert "tenant.down of acme is not in its audit log: the tenant has no database" in caplog.text
    assert not tenant_database(home, acme, read_only=True).exists()


def test_pending_changes_are_written_before_the_log_is_locked(home, acme, registry):
    """Row locks first, the log's lock last, in every transaction: otherwise two
    transactions can each hold what the other waits for (a deadlock on PostgreSQL)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from tenantry.data.audit import record
    from tenantry.data.users import User

    database = registry.lookup(acme).app.extensions["tenantry.db"]
    statements = []

    def note(_connection, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", note)
    try:
        with database.transaction() as session:
            session.add(
                User(
                    username="x",
                    password_hash="-",
                    roles="user",
                    active=True,
                    created_at=datetime.now(UTC),
                )
            )
            record(session, "user.create", "x")
    finally:
        event.remove(Engine, "before_cursor_execute", note)
    user = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO") and "users" in s)
    log = next(i for i, s in enumerate(statements) if "audit_log" in s or "advisory" in s)
    assert user < log, statements


def test_a_module_action_must_be_named_as_module_dot_verb(home, acme, registry):
    from tenantry.endpoint import audit

    database = registry.lookup(acme).app.extensions["tenantry.db"]
    wrong = [
        ("notes", "success"),
        ("Notes.Create", "success"),
        ("notes." + "x" * 40, "success"),
        ("notes.create", "maybe"),
    ]
    for action, outcome in wrong:
        with pytest.raises(ValueError), database.transaction() as session:
            audit(session, action, "t", outcome)


def test_entries_made_at_once_by_many_threads_chain(registry, client, admin):
    from concurrent.futures import ThreadPoolExecutor

    def put(index: int) -> int:
        return client.put(f"/acme/files/f{index}", data=b"x", headers=admin).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(put, range(24))) <= {201, 429}
    from tenantry.data.audit import verify

    verdict = verify(registry.lookup("acme").app.extensions["tenantry.db"])
    assert verdict.broken is None
    assert verdict.entries == 2 + len(client.get("/acme/files", headers=admin).json["files"])


def test_stats_reads_each_tenant_without_loading_it(home, client, admin, globex, tenantry):
    client.put("/acme/files/a", data=b"abc", headers=admin)
    client.put("/acme/files/b", data=b"de", headers=admin)
    client.post("/acme/api/datasets", json={"name": "d", "files": ["a"]}, headers=admin)
    client.post("/acme/files/a/link", headers=admin)
    # globex names a module that cannot be imported: its app could not load, its
    # figures are read all the same.
    config = home.config_file(globex)
    config.write_text(config.read_text().replace("BLUEPRINTS = (", "BLUEPRINTS = ('nope.x', "))
    result = tenantry("tenants", "stats", "--json")
    assert result.exit_code == 0, result.output
    acme, other = json.loads(result.output)
    assert acme | {"last_activity": None} == {
        "slug": "acme",
        "users": 1,
        "files": 2,
        "bytes": 5,
        "quota_used": 8,  # the two files and the link's snapshot of a
        "quota": 10 * 2**30,
        "datasets": 1,
        "audit_entries": 6,
        "last_activity": None,
    }
    assert acme["last_activity"].endswith("Z")
    assert other | {"quota": 0} == {
        "slug": "globex",
        "users": 0,
        "files": 0,
        "bytes": 0,
        "quota_used": 0,
        "quota": 0,
        "datasets": 0,
        "audit_entries": 0,
        "last_activity": None,
    }
    text_output = tenantry("tenants", "stats", "acme").output
    assert text_output.startswith("acme\tusers=1\tfiles=2\tbytes=5\tquota=8/10737418240 ")
    assert tenantry("tenants", "stats", "nope").exit_code == 2


def test_stats_neither_migrates_nor_writes(home, acme, tenantry):
    raw_sql(home, acme, "DROP TABLE {log}")
    raw_sql(home, acme, "UPDATE {log} SET version_num = '0006'", table="alembic_version")
    result = tenantry("tenants", "stats", acme, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["audit_entries"] is None and row["last_activity"] is None
    assert row["users"] == 0
    assert_still_before_the_log(home, acme)


def test_stats_and_audit_leave_a_sqlite_database_and_its_wal_as_they_are(home, acme, tenantry):
    import hashlib
    import subprocess
    import sys

    if home.database_url:
        # PostgreSQL: the read-only transaction refuses any write (a write would fail).
        assert tenant_database(home, acme, read_only=True).engine.get_execution_options()[
            "postgresql_readonly"
        ]
        return
    path = home.instance_dir(acme) / "tenant.db"
    # A writer killed before its checkpoint leaves a -wal file: a read must not fold it in.
    writer = (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('PRAGMA wal_autocheckpoint=0'); c.execute('UPDATE users SET active = active'); "
        "c.commit(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True)
    files = [path, path.with_name("tenant.db-wal")]

    def digests():
        return [hashlib.sha256(file.read_bytes()).hexdigest() for file in files]

    before = digests()
    assert tenantry("tenants", "stats", acme).exit_code == 0
    assert tenantry("audit", acme, "--verify").exit_code == 0
    assert tenantry("audit", acme).exit_code == 0
    assert digests() == before
