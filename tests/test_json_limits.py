"""MAX_JSON_BODY: every JSON route refuses a body over it, before or while reading it."""

from __future__ import annotations

import io
import json

import pytest

from tenantry.ops.checks import check_tenants
from tests.conftest import bearer

MiB = 1024**2


class Unreadable(io.BytesIO):
    """A request body that must never be read."""

    def read(self, size=-1):
        raise AssertionError("the body was read")

    readline = read


class Counting(io.BytesIO):
    """A request body that counts the bytes read from it."""

    read_bytes = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.read_bytes += len(chunk)
        return chunk


def limit_json(home, slug: str, limit: int) -> None:
    path = home.config_file(slug)
    path.write_text(path.read_text() + f"    MAX_JSON_BODY = {limit}\n")


def test_an_oversized_body_is_refused_from_its_length_before_it_is_read(client, acme):
    response = client.post(
        "/acme/auth/login",
        input_stream=Unreadable(),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(2 * MiB)},
    )
    assert (response.status_code, response.json["error"]) == (413, "payload_too_large")
    assert "1048576 bytes" in response.json["message"]


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(client, acme):
    body = Counting(b'{"username": "' + b"a" * (5 * MiB) + b'"}')
    response = client.post(
        "/acme/auth/login",
        input_stream=body,
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert (response.status_code, response.json["error"]) == (413, "payload_too_large")
    assert body.read_bytes <= MiB + 1


def test_a_body_within_the_limit_is_read_whole(client, acme):
    body = json.dumps({"username": "nobody", "password": "x" * (MiB - 100)}).encode()
    assert len(body) < MiB
    response = client.post("/acme/auth/login", data=body, content_type="application/json")
    assert response.status_code == 401


JSON_ROUTES = [
    ("/auth/login", "public"),
    ("/users", "admin"),
    ("/files/a.txt/link", "admin"),
    ("/api/datasets", "admin"),
    ("/api/datasets/download", "admin"),
]


@pytest.mark.parametrize(("path", "who"), JSON_ROUTES)
def test_every_json_route_keeps_the_tenants_own_limit(
    home, client, acme, add_user, login, path, who
):
    add_user(acme, "root", roles=("admin",))
    headers = bearer(login(acme, "root"))
    limit_json(home, acme, 200)
    small = {"username": "x", "password": "y", "name": "n", "datasets": []}
    large = {**small, "padding": "z" * 300}
    assert client.post(f"/acme{path}", json=large, headers=headers).status_code == 413
    assert client.post(f"/acme{path}", json=small, headers=headers).status_code != 413


def test_the_limit_does_not_apply_to_file_uploads(home, client, acme, add_user, login):
    add_user(acme, "root", roles=("admin",))
    limit_json(home, acme, 200)
    headers = bearer(login(acme, "root"))
    response = client.put("/acme/files/big.bin", data=b"x" * 10_000, headers=headers)
    assert response.status_code == 201


def test_a_link_without_a_body_still_works(client, acme, add_user, login):
    add_user(acme, "root", roles=("admin",))
    headers = bearer(login(acme, "root"))
    client.put("/acme/files/a.txt", data=b"hello", headers=headers)
    assert client.post("/acme/files/a.txt/link", headers=headers).status_code == 201


@pytest.mark.parametrize("value", ["0", "-1", "True", "1.5", "'1'"])
def test_a_bad_limit_is_named_by_check(home, acme, value):
    limit_json(home, acme, value)  # written as source
    assert any("MAX_JSON_BODY" in problem for problem in check_tenants(home)["acme"].problems)
