"""The datasets catalogue: filters, paging, admin-only writes, bundled zip downloads."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.conftest import bearer

pytestmark = [pytest.mark.usefixtures("storage_backend"), pytest.mark.s3_on_sqlite]


@pytest.fixture
def admin(acme, add_user, login):
    add_user(acme, "root", roles=("admin",))
    return bearer(login(acme, "root"))


@pytest.fixture
def reader(acme, add_user, login):
    add_user(acme, "reader")
    return bearer(login(acme, "reader"))


@pytest.fixture
def catalogue(client, admin):
    for name, body in [("a.csv", b"aaaa"), ("b.csv", b"bb"), ("c.bin", b"c" * 10)]:
        client.put(f"/acme/files/{name}", data=body, headers=admin)
    for dataset in [
        {"name": "sales", "description": "Quarterly SALES figures", "uses": ["bi", "ml"],
         "files": ["a.csv", "b.csv"]},
        {"name": "people", "description": "HR records (50% complete)", "uses": ["bi"],
         "files": ["b.csv"]},
        {"name": "images", "description": "raw captures", "uses": ["ml", "vision"],
         "files": ["c.bin"]},
        {"name": "empty", "description": "", "uses": [], "files": []},
    ]:  # fmt: skip
        assert client.post("/acme/api/datasets", json=dataset, headers=admin).status_code == 201


def names(response):
    assert response.status_code == 200, response.json
    return [dataset["name"] for dataset in response.json["data"]]


def test_get_one_dataset_with_its_size(client, reader, catalogue):
    assert client.get("/acme/api/datasets/sales", headers=reader).json == {
        "name": "sales",
        "description": "Quarterly SALES figures",
        "uses": ["bi", "ml"],
        "files": ["a.csv", "b.csv"],
        "size": 6,
    }
    missing = client.get("/acme/api/datasets/nope", headers=reader)
    assert missing.status_code == 404
    assert "nope" in missing.json["message"]


def test_list_is_ordered_by_name_with_total(client, reader, catalogue):
    response = client.get("/acme/api/datasets", headers=reader)
    assert names(response) == ["empty", "images", "people", "sales"]
    assert response.json["total"] == 4


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("uses=bi", ["people", "sales"]),
        ("uses=bi&uses=ml", ["sales"]),
        ("uses=ml&uses=ml", ["images", "sales"]),
        ("uses=bi&uses=vision", []),
        ("uses=nothing", []),
        ("q=sales", ["sales"]),
        ("q=RAW", ["images"]),
        ("q=e", ["empty", "images", "people", "sales"]),
        ("q=50%25", ["people"]),
        ("q=%25", ["people"]),
        ("q=_", []),
        ("q=ml&uses=ml", []),
        ("q=s&uses=ml", ["images", "sales"]),
    ],
)
def test_filters(client, reader, catalogue, query, expected):
    assert names(client.get(f"/acme/api/datasets?{query}", headers=reader)) == expected


def test_paging_counts_all_matches(client, reader, catalogue):
    response = client.get("/acme/api/datasets?limit=2&offset=1", headers=reader)
    assert names(response) == ["images", "people"]
    assert response.json["total"] == 4
    response = client.get("/acme/api/datasets?uses=ml&limit=1&offset=1", headers=reader)
    assert names(response) == ["sales"]
    assert response.json["total"] == 2
    assert names(client.get("/acme/api/datasets?offset=10", headers=reader)) == []


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "limit=1001", "offset=-1",
                                   "offset=x", "limit=1.5"])  # fmt: skip
def test_bad_paging_is_400(client, reader, catalogue, query):
    assert client.get(f"/acme/api/datasets?{query}", headers=reader).status_code == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "sales"}, 409),
        ({"name": "new", "files": ["missing.csv"]}, 400),
        ({"name": "download"}, 400),
        ({"name": "../x"}, 400),
        ({"name": ""}, 400),
        ({}, 400),
        ({"name": "new", "uses": "bi"}, 400),
        ({"name": "new", "uses": [1]}, 400),
        ({"name": "new", "files": "a.csv"}, 400),
        ({"name": "new", "description": 5}, 400),
        ({"name": "new", "files": ["../.env"]}, 400),
    ],
)
def test_create_rejects_bad_bodies(client, admin, catalogue, body, status):
    response = client.post("/acme/api/datasets", json=body, headers=admin)
    assert response.status_code == status, response.json
    assert client.get("/acme/api/datasets", headers=admin).json["total"] == 4


def test_broken_json_is_400(client, admin, catalogue):
    response = client.post(
        "/acme/api/datasets", data=b"{nope", headers=admin, content_type="application/json"
    )
    assert response.status_code == 400


def test_writes_are_admin_only(client, reader, catalogue):
    assert client.post("/acme/api/datasets", json={"name": "x"}, headers=reader).status_code == 403
    assert client.delete("/acme/api/datasets/sales", headers=reader).status_code == 403
    assert client.get("/acme/api/datasets").status_code == 401


def test_delete(client, admin, catalogue):
    assert client.delete("/acme/api/datasets/people", headers=admin).status_code == 204
    assert client.get("/acme/api/datasets/people", headers=admin).status_code == 404
    assert client.delete("/acme/api/datasets/people", headers=admin).status_code == 404


def test_deleting_a_listed_file_is_409_naming_the_datasets(client, admin, catalogue):
    response = client.delete("/acme/files/b.csv", headers=admin)
    assert response.status_code == 409
    assert "people" in response.json["message"] and "sales" in response.json["message"]
    assert client.get("/acme/files/b.csv", headers=admin).status_code == 200
    client.delete("/acme/api/datasets/people", headers=admin)
    client.delete("/acme/api/datasets/sales", headers=admin)
    assert client.delete("/acme/files/b.csv", headers=admin).status_code == 204


def test_download_bundles_the_datasets_in_a_one_time_zip(client, reader, catalogue):
    response = client.post(
        "/acme/api/datasets/download", json={"datasets": ["sales", "images"]}, headers=reader
    )
    assert response.status_code == 201
    addr = response.json["addr"]
    assert addr.startswith("/acme/cached-file?uid=")
    archive = client.get(addr)
    assert archive.status_code == 200
    assert "attachment" in archive.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(archive.get_data())) as bundle:
        assert sorted(bundle.namelist()) == ["images/c.bin", "sales/a.csv", "sales/b.csv"]
        assert bundle.read("sales/a.csv") == b"aaaa"
        assert bundle.read("images/c.bin") == b"c" * 10
    assert client.get(addr).status_code == 410


def test_download_of_an_unknown_dataset_is_404_naming_it(client, reader, catalogue):
    response = client.post(
        "/acme/api/datasets/download", json={"datasets": ["sales", "ghost"]}, headers=reader
    )
    assert response.status_code == 404
    assert "ghost" in response.json["message"]


@pytest.mark.parametrize("body", [{}, {"datasets": []}, {"datasets": "sales"}, {"datasets": [1]}])
def test_download_bad_body_is_400(client, reader, catalogue, body):
    assert client.post("/acme/api/datasets/download", json=body, headers=reader).status_code == 400


def test_datasets_are_invisible_to_other_tenants(client, admin, catalogue, globex, add_user, login):
    add_user(globex, "root", roles=("admin",))
    globex_admin = bearer(login(globex, "root"))
    assert client.get("/globex/api/datasets", headers=globex_admin).json == {"data": [], "total": 0}
    assert client.get("/globex/api/datasets/sales", headers=globex_admin).status_code == 404
    download = client.post(
        "/globex/api/datasets/download", json={"datasets": ["sales"]}, headers=globex_admin
    )
    assert download.status_code == 404
    assert client.get("/globex/api/datasets", headers=admin).status_code == 401


def test_names_sort_by_bytes_on_every_backend(client, admin, reader):
    # PostgreSQL would sort by its locale ("a", "B", "_x"); both backends sort by bytes.
    for name in ["a-set", "B-set", "x-set", "Z-set", "0-set"]:
        body = {"name": name, "description": "", "uses": [], "files": []}
        assert client.post("/acme/api/datasets", json=body, headers=admin).status_code == 201
    listed = names(client.get("/acme/api/datasets", headers=reader))
    assert listed == sorted(listed) == ["0-set", "B-set", "Z-set", "a-set", "x-set"]
