"""Per-tenant file storage through the full dispatcher stack."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import bearer

pytestmark = [pytest.mark.usefixtures("storage_backend"), pytest.mark.s3_on_sqlite]


@pytest.fixture
def token(acme, add_user, login):
    add_user(acme, "alice")
    return login(acme, "alice")


@pytest.fixture
def files(client, token):
    """Call acme's files API as alice."""

    def call(method: str, path: str = "", **kwargs):
        headers = {**bearer(token), **kwargs.pop("headers", {})}
        return client.open(f"/acme/files{path}", method=method, headers=headers, **kwargs)

    return call


def test_round_trip_with_sha256(files):
    body = b"id,amount\n1,10\n" * 1000
    created = files("PUT", "/report.csv", data=body)
    assert created.status_code == 201
    assert created.json == {
        "name": "report.csv",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    download = files("GET", "/report.csv")
    assert download.status_code == 200
    assert download.get_data() == body
    info = files("GET", "/report.csv/info").json
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    assert info["size"] == len(body)
    assert info["modified"].endswith("Z")
    listing = files("GET").json
    assert listing["total"] == 1
    assert listing["files"][0]["name"] == "report.csv"


def test_replace_answers_200_and_serves_the_new_bytes(files):
    assert files("PUT", "/a.txt", data=b"old").status_code == 201
    replaced = files("PUT", "/a.txt", data=b"brand new")
    assert replaced.status_code == 200
    assert files("GET", "/a.txt").get_data() == b"brand new"
    assert files("GET").json["total"] == 1


def test_empty_file(files):
    response = files("PUT", "/empty", environ_overrides={"CONTENT_LENGTH": "0"})
    assert response.status_code == 201, response.json
    assert response.json["size"] == 0
    assert files("GET", "/empty").get_data() == b""


def test_body_without_length_or_chunks_is_411(files):
    response = files("PUT", "/unknown-length", environ_overrides={"wsgi.input_terminated": False})
    assert response.status_code == 411
    assert response.json["error"] == "length_required"


def test_range_etag_and_conditional_get(files):
    files("PUT", "/digits.txt", data=b"0123456789")
    full = files("GET", "/digits.txt")
    etag = full.headers["ETag"]
    assert etag == '"' + hashlib.sha256(b"0123456789").hexdigest() + '"'

    partial = files("GET", "/digits.txt", headers={"Range": "bytes=2-5"})
    assert partial.status_code == 206
    assert partial.get_data() == b"2345"
    assert partial.headers["Content-Range"] == "bytes 2-5/10"

    assert files("GET", "/digits.txt", headers={"If-None-Match": etag}).status_code == 304
    # werkzeug answers a Range before If-None-Match: the range's bytes, not an empty 206
    both = files("GET", "/digits.txt", headers={"If-None-Match": etag, "Range": "bytes=2-5"})
    assert (both.status_code, both.get_data()) == (206, b"2345")
    unsatisfiable = files("GET", "/digits.txt", headers={"Range": "bytes=50-60"})
    assert unsatisfiable.status_code == 416
    head = files("HEAD", "/digits.txt")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "10"
    assert head.get_data() == b""


def test_delete(files):
    files("PUT", "/gone.txt", data=b"x")
    assert files("DELETE", "/gone.txt").status_code == 204
    missing = files("GET", "/gone.txt")
    assert missing.status_code == 404
    assert missing.json == {"error": "not_found", "message": "No such file: gone.txt"}
    assert files("DELETE", "/gone.txt").status_code == 404
    assert files("GET", "/gone.txt/info").status_code == 404


HOSTILE_NAMES = [
    "..", ".", "...", "../x", "..%2fx", "%2e%2e", "%2e%2e%2f", "%2e%2e%2fetc%2fpasswd",
    ".env", "..%2f.env", "..%2f..%2f.env", ".hidden", ".incoming", "-rf", "_x", "%20x",
    "x%20y", "%2fetc%2fpasswd", "%2Fetc%2Fpasswd", "a%5cb", "%5c..%5c.env", "..%5c.env",
    "C:%5cwindows", "a%00b", "%00", "x%00.txt", "report.csv%0a", "report.csv%0d%0a",
    "a" * 256, "a" * 300, "%EF%BD%92eport.csv", "report%E2%80%A4csv", "r%C3%A9sum%C3%A9",
    "%D0%B0dmin", "%E2%80%AEtxt.exe", "a%09b", "a%3Bb", "a%3Fb", "%2A", "a%25b",
    "%c0%ae%c0%ae%2f", "..%c0%af.env", "~root", "$HOME", "a:b", "%7E",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused(files, name):
    for method, suffix in [("PUT", ""), ("GET", ""), ("DELETE", ""), ("GET", "/info")]:
        response = files(method, f"/{name}{suffix}", data=b"payload")
        assert response.status_code in (400, 404), (method, name, response.status_code)
        assert response.json["error"] in ("bad_request", "not_found")


def test_valid_names_that_look_like_internals_stay_inside_storage(files, home):
    for name in ("tenant.db", "wsgi.py", "A" + "b" * 254, "x.-_9"):
        assert files("GET", f"/{name}").status_code == 404
        assert files("PUT", f"/{name}", data=b"mine").status_code == 201
        assert files("GET", f"/{name}").get_data() == b"mine"
    if home.database_url:  # no database file at all: it must not have become one
        assert not home.database_file("acme").exists()
    else:
        assert home.database_file("acme").read_bytes() != b"mine"


def test_files_need_a_token(client, acme):
    for method, path in [("GET", ""), ("PUT", "/a"), ("GET", "/a"), ("DELETE", "/a")]:
        response = client.open(f"/acme/files{path}", method=method)
        assert response.status_code == 401


def test_files_are_invisible_to_other_tenants(client, files, globex, add_user, login, token):
    files("PUT", "/secret.txt", data=b"acme only")
    add_user(globex, "alice")
    globex_token = login(globex, "alice")
    assert client.get("/globex/files/secret.txt", headers=bearer(globex_token)).status_code == 404
    assert client.get("/globex/files", headers=bearer(globex_token)).json["total"] == 0
    assert client.get("/globex/files/secret.txt", headers=bearer(token)).status_code == 401


def limited_tenant(home, make_tenant, slug, **limits):
    make_tenant(slug)
    path = home.config_file(slug)
    path.write_text(
        path.read_text() + "".join(f"    {key} = {value}\n" for key, value in limits.items())
    )
    return slug


def test_over_max_content_length_is_413_and_leaves_nothing(
    home, client, make_tenant, add_user, login, storage_backend
):
    slug = limited_tenant(home, make_tenant, "small", MAX_CONTENT_LENGTH=1000)
    add_user(slug, "alice")
    token = login(slug, "alice")
    response = client.put("/small/files/big", data=b"x" * 2000, headers=bearer(token))
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"
    assert client.get("/small/files", headers=bearer(token)).json["total"] == 0
    storage = home.instance_dir(slug) / "storage"
    assert sorted(p.name for p in storage.iterdir()) == [".blobs", ".incoming", ".links", ".lock"]
    for area in ("incoming", "blobs", "links"):
        assert storage_backend.names(home, slug, area) == []


def test_over_quota_is_507_and_replacing_counts_the_old_size(
    home, client, make_tenant, add_user, login
):
    slug = limited_tenant(home, make_tenant, "tight", STORAGE_QUOTA=1000)
    add_user(slug, "alice")
    auth = bearer(login(slug, "alice"))
    assert client.put("/tight/files/a", data=b"x" * 600, headers=auth).status_code == 201
    over = client.put("/tight/files/b", data=b"x" * 600, headers=auth)
    assert over.status_code == 507
    assert over.json["error"] == "insufficient_storage"
    assert client.put("/tight/files/a", data=b"y" * 900, headers=auth).status_code == 200
    assert client.get("/tight/files/b", headers=auth).status_code == 404
    assert client.get("/tight/files", headers=auth).json["total"] == 1


def test_tenant_without_files_has_no_files_routes(client, make_tenant, add_user, login):
    make_tenant("plain", blueprints=("landing",))
    add_user("plain", "alice")
    response = client.get("/plain/files", headers=bearer(login("plain", "alice")))
    assert response.status_code == 404
