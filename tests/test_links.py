"""One-time cached-file links."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from tenantry.builtin.links.models import OneTimeLink
from tests.conftest import bearer

pytestmark = [pytest.mark.usefixtures("storage_backend"), pytest.mark.s3_on_sqlite]


@pytest.fixture
def auth(acme, add_user, login):
    add_user(acme, "alice")
    return bearer(login(acme, "alice"))


@pytest.fixture
def report(client, auth):
    assert client.put("/acme/files/report.csv", data=b"version 1", headers=auth).status_code == 201
    return "report.csv"


def make_link(client, auth, name="report.csv", **body):
    response = client.post(f"/acme/files/{name}/link", json=body, headers=auth)
    assert response.status_code == 201, response.json
    return response.json["addr"]


def test_link_serves_the_bytes_exactly_once(client, auth, report):
    addr = make_link(client, auth)
    assert addr.startswith("/acme/cached-file?uid=")
    assert len(addr.split("uid=")[1]) >= 22  # >= 128 bits of URL-safe base64
    first = client.get(addr)
    assert first.status_code == 200
    assert first.get_data() == b"version 1"
    assert "Content-Disposition" not in first.headers
    second = client.get(addr)
    assert second.status_code == 410
    assert second.json["error"] == "gone"


def test_head_does_not_use_the_link_up(client, auth, report):
    addr = make_link(client, auth)
    head = client.head(addr)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "9"
    assert client.get(addr).get_data() == b"version 1"
    assert client.head(addr).status_code == 410


def test_range_is_ignored_and_the_whole_file_served(client, auth, report):
    addr = make_link(client, auth)
    response = client.get(addr, headers={"Range": "bytes=0-1"})
    assert response.status_code == 200
    assert response.get_data() == b"version 1"


def test_download_sets_content_disposition(client, auth, report):
    response = client.get(make_link(client, auth, download=True, ttl=60))
    assert response.headers["Content-Disposition"] == "attachment; filename=report.csv"


def test_link_is_a_snapshot_of_the_bytes_when_made(client, auth, report):
    before_overwrite = make_link(client, auth)
    client.put("/acme/files/report.csv", data=b"version 2, longer", headers=auth)
    before_delete = make_link(client, auth)
    client.delete("/acme/files/report.csv", headers=auth)
    assert client.get(before_overwrite).get_data() == b"version 1"
    assert client.get(before_delete).get_data() == b"version 2, longer"


def test_expired_link_is_gone_and_its_snapshot_cleaned_up(
    home, registry, client, auth, report, storage_backend
):
    addr = make_link(client, auth)
    uid = addr.split("uid=")[1]
    database = registry.lookup("acme").app.extensions["tenantry.db"]
    with database.transaction() as session:
        session.execute(
            update(OneTimeLink).where(OneTimeLink.uid == uid).values(expires_at=time.time() - 1)
        )
    assert client.get(addr).status_code == 410
    assert uid in storage_backend.names(home, "acme", "links")
    make_link(client, auth)  # making a link cleans up expired ones
    assert uid not in storage_backend.names(home, "acme", "links")
    assert client.get(addr).status_code == 410  # still gone, not unknown
    assert client.head(addr).status_code == 410


def test_a_used_link_stays_gone_after_clean_ups(client, auth, report):
    addr = make_link(client, auth)
    assert client.get(addr).status_code == 200
    for _ in range(3):
        make_link(client, auth)
    assert client.get(addr).status_code == 410


@pytest.mark.parametrize(
    "query", ["uid=nope", "uid=" + "A" * 43, "uid=../../.env", "uid=" + "a" * 500]
)
def test_unknown_uid_is_404(client, acme, query):
    response = client.get(f"/acme/cached-file?{query}")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_a_uid_with_nul_is_400_like_any_url_with_nul(client, acme):
    response = client.get("/acme/cached-file?uid=%00")
    assert (response.status_code, response.json["error"]) == (400, "bad_request")


def test_missing_uid_is_400(client, acme):
    for path in ("/acme/cached-file", "/acme/cached-file?uid="):
        assert client.get(path).status_code == 400


def test_another_tenants_uid_is_404(client, auth, report, globex):
    addr = make_link(client, auth)
    assert client.get(addr.replace("/acme/", "/globex/")).status_code == 404
    assert client.get(addr).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"ttl": 0}, {"ttl": 86401}, {"ttl": -5}, {"ttl": 1.5}, {"ttl": 60.0}, {"ttl": True},
        {"ttl": "60"}, {"ttl": None}, {"download": "yes"}, {"download": 1}, {"download": None},
    ],
)  # fmt: skip
def test_bad_link_options_are_400(client, auth, report, body):
    response = client.post("/acme/files/report.csv/link", json=body, headers=auth)
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"


def test_link_defaults_and_bounds(client, auth, report):
    assert client.post("/acme/files/report.csv/link", headers=auth).status_code == 201
    for ttl in (1, 86400):
        expires = client.post("/acme/files/report.csv/link", json={"ttl": ttl}, headers=auth).json[
            "expires"
        ]
        assert expires.endswith("Z")
    broken = client.post(
        "/acme/files/report.csv/link",
        data=b"{broken",
        headers=auth,
        content_type="application/json",
    )
    assert broken.status_code == 400


def test_link_to_a_missing_file_is_404_and_needs_a_token(client, auth, acme):
    assert client.post("/acme/files/nothing/link", headers=auth).status_code == 404
    assert client.post("/acme/files/nothing/link").status_code == 401
    assert client.post("/acme/files/..%2f.env/link", headers=auth).status_code in (400, 404)


def test_addr_has_no_prefix_under_host_routing(client, auth, report):
    response = client.post("/files/report.csv/link", headers={**auth, "Host": "acme.localhost"})
    addr = response.json["addr"]
    assert addr.startswith("/cached-file?uid=")
    assert client.get(addr, headers={"Host": "acme.localhost"}).get_data() == b"version 1"


def test_cached_file_exists_only_with_files_or_datasets(client, make_tenant):
    make_tenant("plain", blueprints=("landing",))
    make_tenant("catalogue", blueprints=("datasets",))
    assert client.get("/plain/cached-file?uid=x").status_code == 404
    assert client.get("/plain/cached-file").status_code == 404  # no route: not even a 400
    assert client.get("/catalogue/cached-file").status_code == 400
