"""Tenant operations: backup, verify, restore, clone, delete.

Round trips on both backends and across them; hostile archives; failing writes. The
end-to-end half (a running server, kill -9) is in test_e2e_operations.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import jwt
import pytest

from tenantry.data.db import SCHEMA_REVISION, tenant_database
from tenantry.home.layout import TenantHome
from tenantry.home.loader import load_config_class
from tenantry.ops import archive as archive_format
from tenantry.ops.backup import backup_tenant, verify_archive
from tenantry.ops.backup_schedule import take_backup
from tenantry.ops.backups import list_backups
from tenantry.ops.delete import delete_tenant
from tenantry.ops.errors import OperationFailed
from tenantry.ops.lifecycle import create_tenant
from tenantry.ops.migrate import migrate_tenants
from tenantry.ops.restore import restore_tenant
from tests import postgres
from tests.backends import S3_ID
from tests.conftest import bearer

CSV = b"when,what\n" + b"2026-01-01,thing\n" * 4000
BINARY = os.urandom(2 * 1024 * 1024 + 17)


def fill(client, add_user, login, slug: str = "acme") -> dict:
    """Users, files (two names sharing one content), a dataset and a revoked token;
    returns what a faithful copy must show."""
    add_user(slug, "alice", "alice-password-1", roles=("admin",))
    add_user(slug, "bob", "bob-password-12")
    token = login(slug, "alice", "alice-password-1")
    for name, body in (("a.csv", CSV), ("b.bin", BINARY), ("c.csv", CSV)):
        assert (
            client.put(f"/{slug}/files/{name}", data=body, headers=bearer(token)).status_code == 201
        )
    dataset = {
        "name": "sales",
        "description": "Q3 sales",
        "uses": ["report"],
        "files": ["a.csv", "b.bin"],
    }
    assert (
        client.post(f"/{slug}/api/datasets", json=dataset, headers=bearer(token)).status_code == 201
    )
    revoked = login(slug, "bob", "bob-password-12")
    assert client.post(f"/{slug}/auth/logout", headers=bearer(revoked)).status_code == 204
    return {"token": token, "revoked": revoked, **state(client, slug, token)}


def state(client, slug: str, token: str) -> dict:
    files = client.get(f"/{slug}/files", headers=bearer(token)).json["files"]
    return {
        "users": sorted(
            (u["username"], tuple(u["roles"]), u["active"])
            for u in client.get(f"/{slug}/users", headers=bearer(token)).json["users"]
        ),
        "files": {
            f["name"]: hashlib.sha256(
                client.get(f"/{slug}/files/{f['name']}", headers=bearer(token)).data
            ).hexdigest()
            for f in files
        },
        "datasets": client.get(f"/{slug}/api/datasets", headers=bearer(token)).json,
    }


def logged_in(client, login, slug: str) -> str:
    token = login(slug, "alice", "alice-password-1")
    assert client.get(f"/{slug}/auth/me", headers=bearer(token)).status_code == 200
    return token


@pytest.mark.usefixtures("storage_backend")  # first: before the tenants are made
def test_backup_delete_restore_round_trip(
    home, acme, client, add_user, login, tmp_path, storage_backend
):
    before = fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)
    assert (
        path.parent == tmp_path and path.name.startswith("acme-") and path.name.endswith("Z.tar.gz")
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest = verify_archive(path)
    assert manifest["revisions"]["alembic_version"] == SCHEMA_REVISION
    assert manifest["slug"] == "acme" and manifest["rows"]["users"] == 2
    # one member per content: two names share one blob
    assert sum(m["name"].startswith("files/") for m in manifest["members"]) == 2
    assert "database/login_failures.jsonl" not in {m["name"] for m in manifest["members"]}

    delete_tenant(home, acme, keep_backup=False)
    assert client.get("/acme/").status_code == 404
    restored = restore_tenant(home, path)
    assert (restored.slug, restored.users, restored.files) == ("acme", 2, 3)

    token = logged_in(client, login, "acme")  # the old password
    assert state(client, "acme", token) == {k: before[k] for k in ("users", "files", "datasets")}
    assert storage_backend.names(home, "acme", "blobs") == sorted(set(before["files"].values()))
    if storage_backend.name == S3_ID:  # the restored bytes live in the store alone
        assert not any((home.instance_dir("acme") / "storage" / ".blobs").iterdir())
    # a plain restore keeps the key: old tokens work, and a revoked one stays revoked
    assert client.get("/acme/auth/me", headers=bearer(before["token"])).status_code == 200
    assert client.get("/acme/auth/me", headers=bearer(before["revoked"])).status_code == 401


def test_a_restored_tenant_never_hands_out_an_id_again(
    home, acme, client, add_user, login, tmp_path
):
    """A token names its user by id: the id of a user deleted before the backup must not
    come back as someone else's after a restore."""
    add_user("acme", "alice", "alice-password-1", roles=("admin",))
    add_user("acme", "bob")
    token = login("acme", "alice", "alice-password-1")
    assert client.delete("/acme/users/bob", headers=bearer(token)).status_code == 204
    path = backup_tenant(home, acme, tmp_path)
    restore_tenant(home, path, force=True)
    carol = {"username": "carol", "password": "carol-password-1", "roles": ["user"]}
    assert client.post("/acme/users", json=carol, headers=bearer(token)).status_code == 201
    ids = {
        u["username"]: u["id"]
        for u in client.get("/acme/users", headers=bearer(token)).json["users"]
    }
    assert ids == {"alice": 1, "carol": 3}


@pytest.mark.usefixtures("storage_backend")
def test_restore_as_a_copy_gets_a_fresh_key(home, acme, client, add_user, login, tmp_path):
    before = fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)
    restored = restore_tenant(home, path, as_slug="acme-copy")
    assert restored.slug == "acme-copy"
    token = logged_in(client, login, "acme-copy")
    assert state(client, "acme-copy", token)["files"] == before["files"]
    # no token of the original works at the copy, nor the reverse
    assert client.get("/acme-copy/auth/me", headers=bearer(before["token"])).status_code == 401
    assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 401
    assert client.get("/acme/auth/me", headers=bearer(before["token"])).status_code == 200
    assert client.get("/acme-copy/").json["tenant"] == "acme-copy"
    # the original's host stays the original's
    assert client.get("/", headers={"Host": "acme.localhost"}).json["tenant"] == "acme"


@pytest.mark.usefixtures("storage_backend")
def test_restore_refuses_an_existing_tenant_without_force_and_replaces_it_with(
    home, acme, client, add_user, login, tmp_path, tenantry, storage_backend
):
    before = fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)
    result = tenantry("tenants", "restore", str(path))
    assert result.exit_code == 2 and "--force" in result.output
    # change the tenant, then put the archive back over it
    token = before["token"]
    client.put("/acme/files/late.txt", data=b"after the backup", headers=bearer(token))
    result = tenantry("tenants", "restore", str(path), "--force")
    assert result.exit_code == 0, result.output
    assert "restored tenant acme (2 users, 3 files)" in result.output
    assert state(client, "acme", token)["files"] == before["files"]
    # the late file's bytes went with it; the archive's are the tenant's own again
    assert storage_backend.names(home, "acme", "blobs") == sorted(set(before["files"].values()))
    assert not [p for p in home.tenants_dir.iterdir() if p.name.startswith(".restore-")]
    if home.database_url:
        assert postgres.staging_schemas() == []


@pytest.mark.usefixtures("storage_backend")
def test_clone_copies_everything_with_a_fresh_key(home, acme, client, add_user, login, tenantry):
    before = fill(client, add_user, login)
    result = tenantry("tenants", "clone", "acme", "initech")
    assert result.exit_code == 0, result.output
    assert "cloned acme as initech (2 users, 3 files)" in result.output
    assert "hosts not carried" in result.output and "acme.localhost" in result.output
    token = logged_in(client, login, "initech")
    assert state(client, "initech", token) == {k: before[k] for k in ("users", "files", "datasets")}
    assert client.get("/initech/auth/me", headers=bearer(before["token"])).status_code == 401
    assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 401
    # the two are apart from now on
    client.delete("/initech/files/c.csv", headers=bearer(token))
    assert "c.csv" in state(client, "acme", before["token"])["files"]
    assert client.get("/initech/").json["name"] == "Acme Corp"
    assert tenantry("tenants", "clone", "acme", "initech").exit_code == 2
    assert tenantry("tenants", "clone", "nobody", "other").exit_code == 2
    assert tenantry("tenants", "clone", "acme", "Bad_Slug").exit_code == 2


def test_a_copy_never_takes_a_host_written_in_another_case(home, client, make_tenant, tenantry):
    """HOSTS = ("Hoster.Example",) routes Host: hoster.example; a clone or a restore --as
    of that tenant must not take it, whatever the case or a final dot."""
    make_tenant("hoster")
    config = home.config_file("hoster")
    config.write_text(config.read_text() + '    HOSTS = ("Hoster.Example.",)\n')
    assert tenantry("tenants", "check", "hoster").exit_code == 0
    assert client.get("/", headers={"Host": "hoster.example"}).json["tenant"] == "hoster"
    cloned = tenantry("tenants", "clone", "hoster", "copy")
    assert cloned.exit_code == 0 and "hosts not carried" in cloned.output, cloned.output
    archive = backup_tenant(home, "hoster", home.root)
    restored = restore_tenant(home, archive, as_slug="other-copy")
    assert any("hosts not carried" in note for note in restored.notes)
    for slug in ("copy", "other-copy"):
        assert load_config_class(home, slug).HOSTS == ()
    assert tenantry("tenants", "check").exit_code == 0
    assert client.get("/", headers={"Host": "HOSTER.example:8443"}).json["tenant"] == "hoster"


@pytest.mark.usefixtures("storage_backend")
def test_delete_keeps_an_archive_in_the_trash_and_leaves_nothing_behind(
    home, acme, globex, client, add_user, login, tenantry, storage_backend
):
    fill(client, add_user, login)
    result = tenantry("tenants", "delete", "acme")
    assert result.exit_code == 2 and "--yes" in result.output  # no terminal to ask on
    assert home.exists("acme")
    result = tenantry("tenants", "delete", "acme", "--yes")
    assert result.exit_code == 0, result.output
    trash = list((home.tenants_dir / ".trash").iterdir())
    assert len(trash) == 1 and stat.S_IMODE(trash[0].stat().st_mode) == 0o600
    verify_archive(trash[0])
    assert not home.config_file("acme").exists() and not home.instance_dir("acme").exists()
    for area in ("blobs", "links", "incoming"):  # in the object store too
        assert storage_backend.names(home, "acme", area) == []
    assert "acme" not in json.loads((home.tenants_dir / ".hosts.json").read_text())["modules"]
    if home.database_url:
        assert not tenant_database(home, "acme").exists()
    assert client.get("/acme/").status_code == 404
    assert client.get("/", headers={"Host": "acme.localhost"}).status_code == 404
    assert client.get("/globex/").status_code == 200
    # a new tenant of the slug starts empty
    create_tenant(home, "acme")
    add_user("acme", "zed")
    token = login("acme", "zed")
    assert client.get("/acme/files", headers=bearer(token)).json["total"] == 0
    users = client.get("/acme/users", headers=bearer(token))
    assert users.status_code == 403  # zed is a plain user: the old admins are gone
    assert (
        client.post(
            "/acme/auth/login", json={"username": "alice", "password": "alice-password-1"}
        ).status_code
        == 401
    )
    assert tenantry("tenants", "delete", "nobody", "--yes").exit_code == 2
    # and the archive brings the old one back, as a copy beside it
    assert tenantry("tenants", "restore", str(trash[0]), "--as", "acme-old").exit_code == 0
    assert logged_in(client, login, "acme-old")


def test_unknown_tenants_and_bad_arguments_exit_2(tenantry, acme, tmp_path):
    assert tenantry("tenants", "backup", "nobody").exit_code == 2
    assert tenantry("tenants", "verify", str(tmp_path / "missing.tar.gz")).exit_code == 2
    assert tenantry("tenants", "restore", str(tmp_path / "missing.tar.gz")).exit_code == 2
    out = tmp_path / "taken.tar.gz"
    out.write_bytes(b"mine")
    result = tenantry("tenants", "backup", "acme", "--out", str(out))
    assert result.exit_code == 2 and out.read_bytes() == b"mine"  # never overwritten
    path = tmp_path / "good.tar.gz"
    assert tenantry("tenants", "backup", "acme", "--out", str(path)).exit_code == 0
    assert tenantry("tenants", "restore", str(path), "--as", "Not A Slug").exit_code == 2


@pytest.mark.usefixtures("storage_backend")
def test_backup_without_files_restores_users_and_no_dangling_files(
    home, acme, client, add_user, login, tmp_path, tenantry
):
    fill(client, add_user, login)
    result = tenantry("tenants", "backup", "acme", "--no-files", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    manifest = verify_archive(path)
    assert manifest["files"] is False
    assert not [m for m in manifest["members"] if m["name"].startswith("files/")]
    restore_tenant(home, path, as_slug="bare")
    token = logged_in(client, login, "bare")
    assert client.get("/bare/files", headers=bearer(token)).json["total"] == 0


def test_restoring_a_no_files_archive_over_a_tenant_asks_before_its_files_go(
    home, acme, client, add_user, login, tmp_path, tenantry
):
    """verify and restore say the archive holds no files; restore --force of it over a
    tenant with files is refused (nothing changes) unless --discard-files says so."""
    before = fill(client, add_user, login)
    path = Path(
        tenantry("tenants", "backup", "acme", "--no-files", "--out", str(tmp_path)).output.strip()
    )
    verified = tenantry("tenants", "verify", str(path))
    assert verified.exit_code == 0 and "no files: made with --no-files" in verified.output
    refused = tenantry("tenants", "restore", str(path), "--force")
    assert refused.exit_code == 2 and "add --discard-files" in refused.output
    assert state(client, "acme", before["token"])["files"] == before["files"]
    done = tenantry("tenants", "restore", str(path), "--force", "--discard-files")
    assert done.exit_code == 0 and "the archive holds no files" in done.output, done.output
    token = logged_in(client, login, "acme")
    assert client.get("/acme/files", headers=bearer(token)).json["total"] == 0


def test_writes_are_held_while_a_backup_runs_and_reads_go_on(home, acme, client, add_user, login):
    from tenantry.ops.hold import writes_held

    add_user("acme", "alice", "alice-password-1", roles=("admin",))
    token = login("acme", "alice", "alice-password-1")
    with writes_held(home, acme):
        response = client.put("/acme/files/x.txt", data=b"x", headers=bearer(token))
        assert response.status_code == 503 and response.json["error"] == "service_unavailable"
        assert response.headers["Retry-After"] == "10"
        assert client.get("/acme/files", headers=bearer(token)).status_code == 200
        assert client.get("/globex/").status_code in (200, 404)
    assert client.put("/acme/files/x.txt", data=b"x", headers=bearer(token)).status_code == 201
    # a marker whose holder died (no heartbeat for 30 s) holds nothing
    marker = home.writes_held_marker(acme)
    marker.touch()
    assert home.writes_held(acme)
    os.utime(marker, (0, 0))
    assert not home.writes_held(acme)


# -- across backends and revisions ----------------------------------------------------------


def test_an_archive_moves_between_sqlite_and_postgresql(
    database_url, tmp_path, client, add_user, login, monkeypatch
):
    """From the other backend to this test's: SQLite → PostgreSQL and back."""
    from tenantry.server.dispatch import TenantDispatcher
    from tenantry.server.log import RequestLog
    from tenantry.server.registry import TenantRegistry
    from tenantry.testing import BufferedClient

    reason = postgres.unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    other = TenantHome(tmp_path / "other", None if database_url else postgres.session_url())
    (other.root / "config").mkdir(parents=True)
    create_tenant(other, "acme")
    registry = TenantRegistry(other, check_interval=0)
    other_client = BufferedClient(RequestLog(TenantDispatcher(registry)))
    try:
        from tenantry.data.users import create_user
        from tenantry.web.auth import guard_of

        app = registry.lookup("acme").app
        for name, password, roles in (
            ("alice", "alice-password-1", ["admin"]),
            ("bob", "bob-password-12", ["user"]),
        ):
            create_user(
                app.extensions["tenantry.db"], guard_of(app).hash_password, name, password, roles
            )
        response = other_client.post(
            "/acme/auth/login", json={"username": "alice", "password": "alice-password-1"}
        )
        token = response.json["access_token"]
        for name, body in (("a.csv", CSV), ("b.bin", BINARY)):
            assert (
                other_client.put(
                    f"/acme/files/{name}", data=body, headers=bearer(token)
                ).status_code
                == 201
            )
        dataset = {"name": "sales", "description": "Q3", "uses": ["report"], "files": ["a.csv"]}
        other_client.post("/acme/api/datasets", json=dataset, headers=bearer(token))
        before = state(other_client, "acme", token)
        path = backup_tenant(other, "acme", tmp_path)
    finally:
        registry.close()
        if other.database_url:
            tenant_database(other, "acme").drop_schema()
    here = TenantHome(tmp_path / "home", database_url)
    restore_tenant(here, path)
    token = logged_in(client, login, "acme")
    assert state(client, "acme", token) == before


def rewrite(path: Path, out: Path, change) -> Path:
    """Copy an archive with ``change(manifest, members)`` applied (members: name → bytes),
    the manifest's sizes and sha256s made to match again."""
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members.pop("manifest.json"))
    change(manifest, members)
    manifest["members"] = [archive_format.describe(name, data) for name, data in members.items()]
    with open(out, "wb") as sink:
        writer = archive_format.ArchiveWriter(sink, manifest)
        for name, data in members.items():
            writer.add(name, io.BytesIO(data))
        writer.close()
    return out


def test_an_older_revision_is_migrated_forward_and_a_newer_one_refused(
    home, acme, client, add_user, login, tmp_path, tenantry
):
    fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)

    def as_0005(manifest, members):  # users had no token_generation before 0006
        manifest["revisions"]["alembic_version"] = "0005"
        del members["database/audit_log.jsonl"]  # nor an audit log before 0007
        for key in ("rows", "sequences"):
            manifest[key].pop("audit_log", None)
        lines = members["database/users.jsonl"].decode().splitlines()
        header = json.loads(lines[0])
        rows = [json.loads(line) for line in lines[1:]]
        for column in ("token_key", "token_generation"):  # 0008's, then 0006's
            at = header["columns"].index(column)
            for key in ("columns", "kinds"):
                del header[key][at]
            for row in rows:
                del row[at]
        members["database/users.jsonl"] = (
            "\n".join(json.dumps(x) for x in [header, *rows]).encode() + b"\n"
        )

    old = rewrite(path, tmp_path / "old.tar.gz", as_0005)
    result = tenantry("tenants", "restore", str(old), "--as", "acme-0005")
    assert result.exit_code == 0, result.output
    logged_in(client, login, "acme-0005")
    assert tenant_database(home, "acme-0005").current_revision() == SCHEMA_REVISION

    def as_newer(manifest, members):
        manifest["revisions"]["alembic_version"] = "0099"

    newer = rewrite(path, tmp_path / "newer.tar.gz", as_newer)
    assert tenantry("tenants", "verify", str(newer)).exit_code == 0  # whole, just too new
    result = tenantry("tenants", "restore", str(newer), "--as", "acme-new")
    assert result.exit_code == 1 and "0099" in result.output
    assert not home.exists("acme-new")


# -- hostile archives -----------------------------------------------------------------------


def raw_archive(out: Path, manifest: dict, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """An archive written by tarfile itself, exactly as given (for what tenantry never writes)."""
    with tarfile.open(out, "w:gz") as tar:
        body = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out


def hostile_archives(path: Path, tmp_path: Path) -> dict[str, Path]:
    good = path.read_bytes()
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members.pop("manifest.json"))
    made = {}

    def write(name: str, data: bytes) -> None:
        made[name] = tmp_path / f"{name}.tar.gz"
        made[name].write_bytes(data)

    write("truncated", good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) * 2 // 3] ^= 0x01
    write("flipped-byte", bytes(flipped))
    write("not-gzip", b"this is not an archive at all")

    def regular(name: str, data: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info

    listed = [(regular(name, data), data) for name, data in members.items()]
    extra = b"surprise"
    made["member-added"] = raw_archive(
        tmp_path / "added.tar.gz",
        manifest,
        [*listed, (regular("files/" + hashlib.sha256(extra).hexdigest(), extra), extra)],
    )
    made["member-missing"] = raw_archive(tmp_path / "missing.tar.gz", manifest, listed[:-1])
    for label, name in (
        ("dot-dot", "../../escaped.txt"),
        ("absolute", "/tmp/escaped.txt"),
        ("nested", "files/../../escaped.txt"),
    ):
        hostile_manifest = {
            **manifest,
            "members": [*manifest["members"], archive_format.describe(name, extra)],
        }
        made[label] = raw_archive(
            tmp_path / f"{label}.tar.gz", hostile_manifest, [*listed, (regular(name, extra), extra)]
        )
        made[label + "-unlisted"] = raw_archive(
            tmp_path / f"{label}-unlisted.tar.gz",
            manifest,
            [(regular(name, extra), extra), *listed],
        )
    link = tarfile.TarInfo(CONFIG := "tenant/config.py")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    made["symlink"] = raw_archive(tmp_path / "symlink.tar.gz", manifest, [(link, b""), *listed[1:]])
    lying = {
        **manifest,
        "members": [
            dict(m, size=m["size"] + 1) if m["name"] == CONFIG else m for m in manifest["members"]
        ],
    }
    made["lying-size"] = raw_archive(tmp_path / "lying.tar.gz", lying, listed)
    made["lying-sha256"] = raw_archive(
        tmp_path / "lying-sha.tar.gz",
        {
            **manifest,
            "members": [
                dict(m, sha256="0" * 64) if m["name"] == CONFIG else m for m in manifest["members"]
            ],
        },
        listed,
    )
    # a gzip bomb: a member whose header claims a terabyte the manifest never mentioned,
    # and one whose manifest honestly claims a petabyte (no disk holds it)
    made["bomb-header"] = bomb(tmp_path / "bomb.tar.gz", manifest, listed, 1 << 40, claimed=100)
    made["bomb-manifest"] = bomb(
        tmp_path / "bomb2.tar.gz", manifest, listed, 1 << 50, claimed=1 << 50
    )
    return made


def bomb(out: Path, manifest: dict, listed, size: int, claimed: int) -> Path:
    """A tar.gz whose last member declares ``size`` bytes of zeros, of which 64 MiB are
    actually there (compressed to about 64 KiB)."""
    name = "files/" + "ab" * 32
    manifest = {
        **manifest,
        "members": [*manifest["members"], {"name": name, "size": claimed, "sha256": "ab" * 32}],
    }
    body = json.dumps(manifest).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size = len(body)
    with gzip.open(out, "wb", compresslevel=9) as sink:
        for member_info, data in [(info, body), *listed]:
            sink.write(member_info.tobuf(tarfile.PAX_FORMAT))
            sink.write(data + bytes(-len(data) % tarfile.BLOCKSIZE))
        info = tarfile.TarInfo(name)
        info.size = size
        sink.write(info.tobuf(tarfile.PAX_FORMAT))
        zeros = bytes(1024 * 1024)
        for _ in range(64):
            sink.write(zeros)
    return out


def test_hostile_archives_are_refused_and_change_nothing(
    home, acme, client, add_user, login, tmp_path, tenantry
):
    before = fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)
    (tmp_path / "hostile").mkdir()
    made = hostile_archives(path, tmp_path / "hostile")
    outside = sorted(p.name for p in tmp_path.iterdir())
    for label, hostile in made.items():
        result = tenantry("tenants", "verify", str(hostile))
        assert result.exit_code == 1, (label, result.output)
        for args in (("--force",), ("--as", "acme-copy")):
            result = tenantry("tenants", "restore", str(hostile), *args)
            assert result.exit_code == 1, (label, args, result.output)
            assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == outside
    assert not list(Path("/tmp").glob("escaped.txt"))
    assert not [p for p in home.tenants_dir.iterdir() if p.name.startswith(".restore-")]
    assert not home.exists("acme-copy")
    assert state(client, "acme", before["token"]) == {
        k: before[k] for k in ("users", "files", "datasets")
    }
    if home.database_url:
        assert postgres.staging_schemas() == []


def test_hostile_archives_name_what_is_wrong(home, acme, tmp_path, tenantry):
    path = backup_tenant(home, acme, tmp_path)
    (tmp_path / "hostile").mkdir()
    made = hostile_archives(path, tmp_path / "hostile")
    expected = {
        "member-added": "not in the manifest",
        "member-missing": "is missing",
        "dot-dot": "invalid member entry",
        "dot-dot-unlisted": "not in the manifest",
        "symlink": "not a regular file",
        "lying-size": "the manifest says",
        "lying-sha256": "does not match its sha256",
        "bomb-header": "the manifest says 100",
        "truncated": "",
        "flipped-byte": "",
    }
    for label, words in expected.items():
        result = tenantry("tenants", "verify", str(made[label]))
        assert result.exit_code == 1 and words in result.output, (label, result.output)
    result = tenantry("tenants", "restore", str(made["bomb-manifest"]), "--as", "boom")
    assert result.exit_code == 1 and "free" in result.output


def test_a_failing_write_leaves_no_archive_and_removes_nothing(
    home, acme, client, add_user, login, tmp_path
):
    """A disk that fills up mid-write (simulated: a file-size limit on the backup's process)."""
    import subprocess
    import sys

    fill(client, add_user, login)
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))\n"
        "from tenantry.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "TENANTRY_HOME": str(home.root)}
    result = subprocess.run(
        [sys.executable, "-c", script, "tenants", "backup", "acme", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.glob("*.tar.gz")) == [] and list(tmp_path.glob(".*.part")) == []
    result = subprocess.run(
        [sys.executable, "-c", script, "tenants", "delete", "acme", "--yes"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert home.exists("acme") and client.get("/acme/").status_code == 200
    assert not home.writes_held(acme)
    path = backup_tenant(home, acme, tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", script, "tenants", "restore", str(path), "--force"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    token = login("acme", "alice", "alice-password-1")
    assert client.get("/acme/files/b.bin", headers=bearer(token)).data == BINARY
    assert not [p for p in home.tenants_dir.iterdir() if p.name.startswith(".restore-")]


def test_an_endpoint_modules_tables_and_revision_travel_too(
    home, make_tenant, client, add_user, login, tmp_path
):
    """The notes example brings its own tables and alembic line: they come back."""
    make_tenant("shop", blueprints=("landing", "auth", "notes"))
    add_user("shop", "sam")
    token = login("shop", "sam")
    created = client.post("/shop/notes", json={"text": "buy milk"}, headers=bearer(token))
    assert created.status_code == 201
    path = backup_tenant(home, "shop", tmp_path)
    manifest = verify_archive(path)
    assert "database/notes.jsonl" in {m["name"] for m in manifest["members"]}
    module_lines = [table for table in manifest["revisions"] if table != "alembic_version"]
    assert len(module_lines) == 1 and manifest["revisions"][module_lines[0]] == "notes_0001"
    restore_tenant(home, path, as_slug="shop-copy")
    copy_token = login("shop-copy", "sam")
    listed = client.get("/shop-copy/notes", headers=bearer(copy_token)).json["notes"]
    assert [note["text"] for note in listed] == ["buy milk"]


# -- what a review found ----------------------------------------------------------------------


@pytest.mark.usefixtures("storage_backend")
def test_a_failed_restore_into_a_new_slot_leaves_no_files_behind(
    home, acme, client, add_user, login, tmp_path, monkeypatch, storage_backend
):
    from tenantry.ops import swap

    fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)

    def busy(*_args):
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(swap, "_swap_in_new", busy)
    with pytest.raises(OperationFailed, match="busy"):
        restore_tenant(home, path, as_slug="acme-copy")
    assert not home.exists("acme-copy")
    for area in ("blobs", "links", "incoming"):  # in the object store too
        assert storage_backend.names(home, "acme-copy", area) == []
    assert len(storage_backend.names(home, "acme", "blobs")) == 2  # the original's stay


def test_a_failed_swap_leaves_the_tenant_as_it_was(
    home, acme, client, add_user, login, tmp_path, monkeypatch
):
    """The one step that puts the restored tenant in place fails (a busy mount, say): the
    tenant there, with what it got after the backup, is untouched, and nothing is left."""
    from tenantry.ops import swap

    before = fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)
    late = client.put("/acme/files/late.txt", data=b"after", headers=bearer(before["token"]))
    assert late.status_code == 201
    config = home.config_file(acme)
    config.write_text(config.read_text().replace('NAME = "Acme Corp"', 'NAME = "Renamed"'))
    blobs = sorted(os.listdir(home.instance_dir(acme) / "storage" / ".blobs"))

    def busy(*_args):
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(swap, "_rename_schemas" if home.database_url else "_exchange", busy)
    with pytest.raises(OperationFailed, match=r"busy.*as it was"):
        restore_tenant(home, path, force=True)
    files = state(client, "acme", before["token"])["files"]
    assert set(files) == {"a.csv", "b.bin", "c.csv", "late.txt"}
    assert 'NAME = "Renamed"' in config.read_text()  # its config module, put back
    assert sorted(os.listdir(home.instance_dir(acme) / "storage" / ".blobs")) == blobs
    assert not home.writes_held(acme)
    assert not [p for p in home.tenants_dir.iterdir() if p.name.startswith(".restore-")]
    if home.database_url:
        assert postgres.staging_schemas() == []


def test_gc_leaves_a_running_restore_alone(home, acme, tmp_path, monkeypatch):
    from tenantry.ops import gc, restore

    path = backup_tenant(home, acme, tmp_path)
    swap_in = restore.swap_in
    removed = []

    def gc_first(*args):
        removed.append(gc.remove_stale_staging(home))
        return swap_in(*args)

    monkeypatch.setattr(restore, "swap_in", gc_first)
    restore_tenant(home, path, force=True)
    assert removed == [0]


def test_gc_puts_back_a_tenant_a_killed_replacement_moved_aside(home, acme, client):
    """Where the folders cannot be exchanged in one step, a replacement renames twice; gc
    puts the old folder back if the process died between the two."""
    staging = home.tenants_dir / ".restore-acme-0123456789ab"
    staging.mkdir()
    os.rename(home.instance_dir(acme), staging / "old")
    from tenantry.ops.gc import remove_leftovers

    assert remove_leftovers(home) == 1
    assert not staging.exists() and home.env_file(acme).exists()
    assert client.get("/acme/status").status_code == 200


def test_restore_force_brings_back_a_tenant_that_lost_its_folder_or_schema(
    home, acme, client, add_user, login, tmp_path
):
    before = fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)
    if home.database_url:
        tenant_database(home, acme).drop_schema()
    else:
        import shutil

        shutil.rmtree(home.instance_dir(acme))
    restore_tenant(home, path, force=True)
    # what it revoked since the backup is lost with it: no old session is trusted
    assert client.get("/acme/auth/me", headers=bearer(before["token"])).status_code == 401
    token = logged_in(client, login, "acme")
    assert state(client, "acme", token)["files"] == before["files"]


def test_sessions_ended_since_the_backup_stay_ended_after_restore_force(
    home, acme, client, add_user, login, tmp_path
):
    add_user("acme", "alice", "alice-password-1", roles=("admin",))
    for name in ("mallory", "bob", "carol"):
        add_user("acme", name)
    admin = login("acme", "alice", "alice-password-1")
    tokens = {name: login("acme", name) for name in ("mallory", "bob", "carol")}
    path = backup_tenant(home, acme, tmp_path)
    assert client.post("/acme/auth/logout", headers=bearer(tokens["mallory"])).status_code == 204
    disable = client.patch("/acme/users/bob", json={"active": False}, headers=bearer(admin))
    assert disable.status_code == 200
    assert client.delete("/acme/users/carol", headers=bearer(admin)).status_code == 204
    restore_tenant(home, path, force=True)
    for name, token in tokens.items():
        assert client.get("/acme/auth/me", headers=bearer(token)).status_code == 401, name
    # the restored users are back (as they were) and log in afresh
    assert client.get("/acme/auth/me", headers=bearer(login("acme", "carol"))).status_code == 200
    assert client.get("/acme/auth/me", headers=bearer(admin)).status_code == 200


def test_a_disabled_modules_tables_travel_and_a_module_table_counts_on(
    home, make_tenant, client, add_user, login, tmp_path
):
    """Disabling a module keeps its data, so the archive carries it and a restore makes
    its tables; ids go on past the restored ones (on PostgreSQL, its sequence is set)."""
    make_tenant("shop", blueprints=("landing", "auth", "notes"))
    add_user("shop", "sam")
    token = login("shop", "sam")
    for text in ("one", "two"):
        assert (
            client.post("/shop/notes", json={"text": text}, headers=bearer(token)).status_code
            == 201
        )
    path = backup_tenant(home, "shop", tmp_path)
    restore_tenant(home, path, as_slug="shop-two")
    token = login("shop-two", "sam")
    added = client.post("/shop-two/notes", json={"text": "three"}, headers=bearer(token))
    assert added.status_code == 201, added.json
    config = home.config_file("shop")
    config.write_text(config.read_text().replace('"notes"', '"files"'))
    later = tmp_path / "later"
    later.mkdir()
    path = backup_tenant(home, "shop", later)
    assert "database/notes.jsonl" in {m["name"] for m in verify_archive(path)["members"]}
    restore_tenant(home, path, as_slug="shop-three")
    with tenant_database(home, "shop-three").engine.connect() as connection:
        from sqlalchemy import text

        table = (
            f'"{tenant_database(home, "shop-three").schema}".notes'
            if home.database_url
            else "notes"
        )
        assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 2  # noqa: S608


def test_a_table_an_archive_cannot_name_fails_the_backup_instead_of_vanishing(home, acme, tmp_path):
    from sqlalchemy import text

    database = tenant_database(home, acme)
    prefix = f'"{database.schema}".' if database.schema else ""
    with database.engine.begin() as connection:
        connection.execute(text(f'CREATE TABLE {prefix}"odd name" (id INTEGER PRIMARY KEY)'))
        connection.execute(text(f'CREATE TABLE {prefix}"userBadges" (id INTEGER PRIMARY KEY)'))
    database.dispose()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OperationFailed, match="odd name"):
        backup_tenant(home, acme, out)
    assert list(out.iterdir()) == []
    assert archive_format.TABLE_MEMBER.fullmatch("database/userBadges.jsonl")


def test_a_backup_without_files_leaves_datasets_without_files(
    home, acme, client, add_user, login, tmp_path
):
    fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path, files=False)
    restore_tenant(home, path, as_slug="bare")
    token = logged_in(client, login, "bare")
    dataset = client.get("/bare/api/datasets/sales", headers=bearer(token)).json
    assert dataset["files"] == [] and dataset["size"] == 0
    download = client.post(
        "/bare/api/datasets/download", json={"datasets": ["sales"]}, headers=bearer(token)
    )
    assert download.status_code == 201


def test_malformed_archives_are_refused_without_a_traceback(home, acme, tmp_path, tenantry):
    path = backup_tenant(home, acme, tmp_path)

    def latin_env(manifest, members):
        members["tenant/env"] = b"SECRET_KEY=caf\xe9-" + b"x" * 60 + b"\n"

    def lots(manifest, members):
        manifest["sequences"] = {"users": {"column": "id", "value": "lots"}}

    def listed(manifest, members):
        manifest["sequences"] = ["users"]

    for change in (latin_env, lots, listed):
        bad = rewrite(path, tmp_path / f"{change.__name__}.tar.gz", change)
        result = tenantry("tenants", "restore", str(bad), "--as", "bad-copy")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    deep = tmp_path / "deep.tar.gz"
    with tarfile.open(deep, "w:gz") as tar:
        body = b"[" * 100_000 + b"]" * 100_000
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    result = tenantry("tenants", "verify", str(deep))
    assert result.exit_code == 1 and "not valid JSON" in result.output
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(path.read_bytes() + gzip.compress(b"appended data"))
    result = tenantry("tenants", "verify", str(junk))
    assert result.exit_code == 1 and "after its end" in result.output
    assert not home.exists("bad-copy")


def test_copies_of_a_hand_written_config_and_archive_targets(home, tmp_path, tenantry):
    (home.config_dir / "hand.py").write_text(
        "from tenantry.config import TenantConfig\n\n\n"
        "class Hand(TenantConfig):\n"
        "    SLUG = 'hand'  # written by hand\n"
        "    NAME = 'hand'\n"
    )
    instance = home.instance_dir("hand")
    instance.mkdir(parents=True)
    (instance / ".env").write_text("SECRET_KEY=" + "k" * 64 + "\n")
    migrate_tenants(home, ["hand"])
    result = tenantry("tenants", "clone", "hand", "hand-two")
    assert result.exit_code == 0, result.output
    text = home.config_file("hand-two").read_text()
    assert 'SLUG = "hand-two"  # written by hand' in text and 'NAME = "hand-two"' in text
    result = tenantry("tenants", "backup", "hand", "--out", str(tmp_path / "missing") + os.sep)
    assert result.exit_code == 2 and "not a folder" in result.output
    assert tenantry("tenants", "clone", "hand", "hand-two").output.count("--force") == 0


def test_gc_puts_back_the_config_of_a_replacement_killed_before_its_commit(home, acme, client):
    """A replacement writes the new config module first (the old one in its journal),
    then commits; killed in between, gc puts the old one back."""
    from tenantry.ops.gc import remove_leftovers

    config = home.config_file(acme)
    old = config.read_text()
    staging = home.tenants_dir / ".restore-acme-0123456789ab"
    (staging / "tenant").mkdir(parents=True)
    (staging / "config.old").write_text(old)
    if home.database_url:
        (staging / "env.old").write_text(home.env_file(acme).read_text())
        from tenantry.data.db import shared_engine
        from tenantry.ops.staging import drop_schema

        with shared_engine(home.database_url).begin() as connection:  # not yet renamed
            connection.exec_driver_sql('CREATE SCHEMA "tenantry_restore_0123456789ab"')
    config.write_text(old.replace('NAME = "Acme Corp"', 'NAME = "Half Restored"'))
    assert remove_leftovers(home) == 1
    assert config.read_text() == old and not staging.exists()
    assert client.get("/acme/").json["name"] == "Acme Corp"
    if home.database_url:
        assert postgres.staging_schemas() == []
        drop_schema(home, "tenantry_restore_0123456789ab")


def test_restore_force_ends_sessions_of_a_rotated_key_and_of_a_reused_username(
    home, acme, client, add_user, login, tmp_path
):
    from tenantry.ops.lifecycle import rotate_secret

    add_user("acme", "alice", "alice-password-1", roles=("admin",))
    add_user("acme", "carol")
    admin = login("acme", "alice", "alice-password-1")
    carol = login("acme", "carol")
    path = backup_tenant(home, acme, tmp_path)
    # carol is deleted and her name given to someone new; her old token must stay dead
    assert client.delete("/acme/users/carol", headers=bearer(admin)).status_code == 204
    add_user("acme", "carol", "another-password-1")
    restore_tenant(home, path, force=True)
    assert client.get("/acme/auth/me", headers=bearer(carol)).status_code == 401
    assert client.get("/acme/auth/me", headers=bearer(admin)).status_code == 200
    # a key rotated since the backup: no token of the old key comes back
    again = tmp_path / "again"
    again.mkdir()
    path = backup_tenant(home, acme, again)
    rotate_secret(home, acme)
    assert client.get("/acme/auth/me", headers=bearer(admin)).status_code == 401
    restore_tenant(home, path, force=True)
    assert client.get("/acme/auth/me", headers=bearer(admin)).status_code == 401
    assert logged_in(client, login, "acme")


def test_delete_holds_writes_from_its_backup_to_the_removal(home, acme, monkeypatch):
    from tenantry.ops import delete

    seen = []
    backup_then = delete.write_backup

    def check(*args, **kwargs):
        backup_then(*args, **kwargs)
        seen.append(home.writes_held(acme))

    monkeypatch.setattr(delete, "write_backup", check)
    delete_tenant(home, acme)
    assert seen == [True]


def test_a_user_id_handed_out_again_after_a_restore_is_not_the_old_tokens_user(
    home, acme, client, add_user, login, tenantry, tmp_path
):
    """A restore sets the users' id counter from the archive: a user made after it can get
    the id of one made after the backup. That user's old token must not speak for it."""
    add_user(acme, "alice")
    archive = backup_tenant(home, acme, tmp_path)
    add_user(acme, "bob")
    bob = login(acme, "bob")
    assert tenantry("tenants", "restore", str(archive), "--force").exit_code == 0
    registry_sees_restore = client.get(
        f"/{acme}/auth/me", headers={"Authorization": f"Bearer {bob}"}
    )
    assert registry_sees_restore.status_code == 401
    carol = add_user(acme, "carol", roles=("admin",))
    assert (
        client.get(f"/{acme}/auth/me", headers={"Authorization": f"Bearer {bob}"}).status_code
        == 401
    )
    # The case this guards: carol has bob's old id (the restored counter handed it out).
    assert jwt.decode(bob, options={"verify_signature": False})["id"] == carol.id


def _peak_rss_of(argv: list[str]) -> tuple[int, str, int]:
    """Run ``argv``; its exit status, output, and peak memory (KiB)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _pid, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read().decode()
    process.stdout.close()
    return os.waitstatus_to_exitcode(status), output, usage.ru_maxrss


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE])
def test_an_extended_header_claiming_400_mib_is_refused_in_flat_memory(home, tmp_path, kind):
    """A 400 KB archive whose first header is a GNU long name (or a pax header) claiming
    the 400 MiB of zeros that follow: tarfile would read them into memory before any check;
    verify refuses the header at once, in the memory of an ordinary run."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = kind
    info.size = 400 * 1024**2
    archive = tmp_path / "claim.tar.gz"
    with gzip.open(archive, "wb") as out:  # 400 MiB of zeros: about 400 KB compressed
        out.write(info.tobuf(tarfile.GNU_FORMAT))
        for _ in range(400):
            out.write(bytes(1024**2))
    assert archive.stat().st_size < 1024**2
    tenantry_bin = str(Path(sys.executable).parent / "tenantry")
    code, output, peak = _peak_rss_of([tenantry_bin, "tenants", "verify", str(archive)])
    assert code == 1 and "extended header claims 419430400 bytes" in output, output
    _code, _output, ordinary = _peak_rss_of([tenantry_bin, "--version"])
    assert peak < ordinary + 50 * 1024, (peak, ordinary)  # KiB: no 400 MiB read


def _with_row_change(table: str, column: str, value):
    """An archive change: the first row of ``table`` gets ``value`` in ``column``."""

    def change(manifest, members):
        lines = members[f"database/{table}.jsonl"].decode().splitlines()
        header = json.loads(lines[0])
        row = json.loads(lines[1])
        row[header["columns"].index(column)] = value
        members[f"database/{table}.jsonl"] = (
            "\n".join([lines[0], json.dumps(row), *lines[2:]]).encode() + b"\n"
        )

    return change


def test_restore_checks_every_row_as_the_api_would_before_writing(
    home, acme, client, add_user, login, tmp_path, tenantry
):
    """A hostile archive passes verify (its sha256s are right) but not restore: a stored
    file whose blob is a path, a username the API refuses, a number past 64 bits, a NUL,
    a sequence past 64 bits. Each exits 1 naming the row; nothing is made."""
    fill(client, add_user, login)
    path = backup_tenant(home, acme, tmp_path)

    def huge_sequence(manifest, members):
        manifest["sequences"]["users"]["value"] = 2**70

    cases = {
        "blob path": (_with_row_change("stored_files", "sha256", "../../tenant.db"), "sha256"),
        "file name": (_with_row_change("stored_files", "name", "../x"), "stored_files.jsonl"),
        "username": (_with_row_change("users", "username", "bad name"), "users.jsonl line 2"),
        "huge id": (_with_row_change("users", "id", 2**70), "out of range"),
        "nul": (_with_row_change("users", "password_hash", "x\u0000y"), "holds NUL"),
        "a flag": (_with_row_change("users", "active", "yes"), "true or false"),
        "sequence": (huge_sequence, "out of range"),
    }
    for label, (change, expected) in cases.items():
        bad = rewrite(path, tmp_path / f"{label}.tar.gz", change)
        assert tenantry("tenants", "verify", str(bad)).exit_code == 0, label
        result = tenantry("tenants", "restore", str(bad), "--as", "hostile")
        assert result.exit_code == 1, (label, result.output)
        assert expected in result.output and "Traceback" not in result.output, (
            label,
            result.output,
        )
        assert not home.exists("hostile")


@pytest.mark.usefixtures("storage_backend")  # first: before the tenants are made
def test_scheduled_backups_are_kept_where_every_host_sees_them(
    home, acme, client, add_user, login, storage_backend
):
    """A scheduled backup (the job's work, run here directly) is kept in the tenant's
    folder, or with object storage in the bucket, not on this host's disk; the newest
    BACKUP_KEEP stay; restore takes a listed name from either place."""
    before = fill(client, add_user, login)
    for _ in range(3):
        take_backup(home, acme, keep=2)
        time.sleep(1.1)  # names hold the second
    kept = list_backups(home, acme)
    assert len(kept) == 2
    local = home.instance_dir(acme) / "backups"
    on_disk = sorted(p.name for p in local.iterdir()) if local.exists() else []
    if storage_backend.name == "local":
        assert on_disk == [stored.name for stored in kept]
    else:
        assert on_disk == [] and all("/backups/" in stored.where for stored in kept)
    client.delete("/acme/files/c.csv", headers=bearer(before["token"]))
    restored = restore_tenant(home, kept[-1].name, force=True)
    assert restored.slug == acme and restored.files == 3
    assert [stored.name for stored in list_backups(home, acme)] == [s.name for s in kept]
