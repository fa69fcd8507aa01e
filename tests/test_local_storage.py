"""What only the local disk has: files stored before content addressing."""

from __future__ import annotations

from tests.conftest import bearer


def test_a_file_stored_before_content_addressing_is_still_served(
    home, client, acme, add_user, login
):
    """Files used to live at storage/<name>; their first use gives them their blob."""
    add_user(acme, "alice")
    headers = bearer(login(acme, "alice"))
    client.put("/acme/files/old.txt", data=b"kept from before", headers=headers)
    storage = home.instance_dir(acme) / "storage"
    (blob,) = (storage / ".blobs").iterdir()
    blob.rename(storage / "old.txt")  # the layout before blobs

    response = client.get("/acme/files/old.txt", headers=headers)
    assert response.data == b"kept from before"
    assert response.headers["ETag"].strip('"') == blob.name
    assert (storage / ".blobs" / blob.name).read_bytes() == b"kept from before"
    assert client.post("/acme/files/old.txt/link", headers=headers).status_code == 201
    assert client.delete("/acme/files/old.txt", headers=headers).status_code == 204
    assert not (storage / "old.txt").exists()
    assert list((storage / ".blobs").iterdir()) == []
