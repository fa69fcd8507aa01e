"""TenantClient: a Python client for one tenant's API.

    with TenantClient("http://127.0.0.1:8000", "acme") as client:
        client.login("admin", password)
        client.upload("report.csv", "report.csv")
        addr = client.link("report.csv", download=True)
        data = client.redeem(addr)

Tokens are refreshed before they expire. Calls that may safely be repeated (GET, HEAD,
DELETE, and PUT from bytes or a path) are retried on connection errors; the others never
are. Every error answer raises :class:`TenantryError`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx
import jwt

from tenantry.client.errors import TenantryError

CHUNK_SIZE = 1024 * 1024
REFRESH_MARGIN = 30.0  # seconds before expiry at which a token is refreshed
RETRIES = 3
RETRY_BACKOFF = 0.2

Progress = Callable[[int], None]  # called with the number of bytes just moved
Source = str | os.PathLike[str] | bytes | IO[bytes]


class TenantClient:
    """A client of one tenant: ``base_url`` plus ``tenant`` (None when ``base_url`` already
    points at the tenant, e.g. under host routing)."""

    def __init__(
        self,
        base_url: str,
        tenant: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = RETRIES,
        transport: httpx.BaseTransport | None = None,
    ):
        root = base_url.rstrip("/") + (f"/{tenant}" if tenant else "")
        self.root = root
        self.retries = retries
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._token: str | None = None
        self._claims: dict[str, Any] = {}
        if token:
            self.token = token

    # -- session ---------------------------------------------------------------------

    def __enter__(self) -> TenantClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def token(self) -> str | None:
        """The current access token (refreshed as needed)."""
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._token = value
        self._claims = jwt.decode(value, options={"verify_signature": False}) if value else {}

    def login(self, username: str, password: str) -> str:
        """Log in; returns the access token. :raises TenantryError:"""
        response = self._send(
            "POST", "/auth/login", idempotent=False, auth=False,
            json={"username": username, "password": password},
        )  # fmt: skip
        self.token = response.json()["access_token"]
        return self._token

    def refresh(self) -> str:
        """Swap the token for a fresh one now. :raises TenantryError:"""
        response = self._send("POST", "/auth/refresh", idempotent=False, refresh=False)
        self.token = response.json()["access_token"]
        return self._token

    def logout(self) -> None:
        self._send("POST", "/auth/logout", idempotent=False)
        self.token = None

    def me(self) -> dict:
        return self._json("GET", "/auth/me")

    # -- files -----------------------------------------------------------------------

    def list_files(self) -> dict:
        """``{"files": [...], "total": N}``"""
        return self._json("GET", "/files")

    def info(self, name: str) -> dict:
        return self._json("GET", f"/files/{_segment(name)}/info")

    def delete(self, name: str) -> None:
        self._send("DELETE", f"/files/{_segment(name)}")

    def upload(self, name: str, source: Source, progress: Progress | None = None) -> dict:
        """Upload from a path, bytes or a binary file object, streamed; returns the
        server's ``{"name", "size", "sha256"}``. Retried on connection errors unless the
        source is a file object (it cannot be rewound in general)."""
        repeatable = isinstance(source, bytes | str | os.PathLike)

        def body() -> Iterator[bytes]:
            if isinstance(source, bytes):
                chunks: Iterable[bytes] = (
                    source[i : i + CHUNK_SIZE] for i in range(0, len(source), CHUNK_SIZE)
                )
                yield from _counted(chunks, progress)
            elif isinstance(source, str | os.PathLike):
                with open(source, "rb") as handle:
                    yield from _counted(_chunks_of(handle), progress)
            else:
                yield from _counted(_chunks_of(source), progress)

        headers = {"Content-Type": "application/octet-stream"}
        size = _size_of(source)
        if size is not None:
            headers["Content-Length"] = str(size)
        response = self._send(
            "PUT",
            f"/files/{_segment(name)}",
            idempotent=repeatable,
            content_factory=body,
            headers=headers,
        )
        return response.json()

    def download(
        self, name: str, dest: str | os.PathLike[str], progress: Progress | None = None
    ) -> Path:
        """Stream a file to ``dest``, resuming with Range after a cut, and check its sha256
        before it takes the name ``dest``. :raises TenantryError:"""
        dest = Path(dest)
        expected = self.info(name)
        partial = dest.with_name(dest.name + ".part")
        etag = f'"{expected["sha256"]}"'
        for attempt in range(self.retries + 1):
            have = partial.stat().st_size if partial.exists() else 0
            if have == expected["size"]:
                break
            headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
            try:
                response = self._stream("GET", f"/files/{_segment(name)}", headers=headers)
                try:
                    mode = "ab" if response.status_code == 206 else "wb"
                    with open(partial, mode) as out:
                        for chunk in response.iter_bytes(CHUNK_SIZE):
                            out.write(chunk)
                            if progress:
                                progress(len(chunk))
                finally:
                    response.close()
                break
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise TenantryError(
                        0, "connection_error", f"download of {name} failed: {exc}"
                    ) from exc
                time.sleep(RETRY_BACKOFF * (attempt + 1))
        if _sha256_of(partial) != expected["sha256"]:
            partial.unlink()
            raise TenantryError(0, "corrupt_download", f"{name} did not match its sha256")
        os.replace(partial, dest)
        return dest

    def link(self, name: str, download: bool = False, ttl: int = 300) -> str:
        """A one-time link to the file's current bytes; returns its ``addr``."""
        body = {"download": download, "ttl": ttl}
        return self._json("POST", f"/files/{_segment(name)}/link", idempotent=False, json=body)[
            "addr"
        ]

    def redeem(self, addr: str, dest: str | os.PathLike[str] | None = None) -> bytes | Path:
        """Use a one-time link: its bytes, or written to ``dest``. Never retried (a second
        try would find the link used)."""
        url = str(httpx.URL(self.root).join(addr))
        with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                response.read()
                raise TenantryError.from_response(response)
            if dest is None:
                return response.read()
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    out.write(chunk)
            return Path(dest)

    # -- datasets --------------------------------------------------------------------

    def datasets(
        self, uses: Iterable[str] = (), q: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict:
        """``{"data": [...], "total": N}``"""
        params: list[tuple[str, str | int]] = [("uses", use) for use in uses]
        if q:
            params.append(("q", q))
        params += [("limit", limit), ("offset", offset)]
        return self._json("GET", "/api/datasets", params=params)

    def dataset(self, name: str) -> dict:
        return self._json("GET", f"/api/datasets/{_segment(name)}")

    def create_dataset(
        self,
        name: str,
        description: str = "",
        uses: Iterable[str] = (),
        files: Iterable[str] = (),
    ) -> dict:
        body = {"name": name, "description": description, "uses": list(uses), "files": list(files)}
        return self._json("POST", "/api/datasets", idempotent=False, json=body)

    def delete_dataset(self, name: str) -> None:
        self._send("DELETE", f"/api/datasets/{_segment(name)}")

    def download_datasets(self, names: Iterable[str], dest: str | os.PathLike[str]) -> Path:
        """Fetch a zip of the datasets' files (``<dataset>/<file>``) into ``dest``."""
        link = self._json("POST", "/api/datasets/download", idempotent=False,
                          json={"datasets": list(names)})  # fmt: skip
        return self.redeem(link["addr"], dest)

    # -- transport -------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict:
        return self._send(method, path, **kwargs).json()

    def _headers(self, auth: bool, refresh: bool) -> dict[str, str]:
        if not auth or self._token is None:
            return {}
        if refresh and self._expires_soon():
            self.refresh()
        return {"Authorization": f"Bearer {self._token}"}

    def _expires_soon(self) -> bool:
        now = time.time()
        return (
            self._claims.get("exp", now) - now < REFRESH_MARGIN
            and self._claims.get("rf_exp", 0) > now
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        auth: bool = True,
        refresh: bool = True,
        content_factory: Callable[[], Iterator[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "DELETE")
        attempts = self.retries + 1 if idempotent else 1
        for attempt in range(attempts):
            request_headers = {**(headers or {}), **self._headers(auth, refresh)}
            if content_factory is not None:
                kwargs["content"] = content_factory()
            try:
                response = self._http.request(
                    method, self.root + path, headers=request_headers, **kwargs
                )
            except httpx.TransportError as exc:
                if attempt + 1 == attempts:
                    raise TenantryError(0, "connection_error", str(exc)) from exc
                time.sleep(RETRY_BACKOFF * (attempt + 1))
                continue
            if response.status_code >= 400:
                raise TenantryError.from_response(response)
            return response
        raise AssertionError("unreachable")

    def _stream(self, method: str, path: str, headers: dict[str, str]):
        request = self._http.build_request(
            method, self.root + path, headers={**headers, **self._headers(True, True)}
        )
        response = self._http.send(request, stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise TenantryError.from_response(response)
        return response


def _segment(name: str) -> str:
    """A name as one URL path segment: nothing in it can change the path or the query."""
    return quote(name, safe="")


def _chunks_of(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_SIZE):
        yield chunk


def _counted(chunks: Iterable[bytes], progress: Progress | None) -> Iterator[bytes]:
    for chunk in chunks:
        if progress:
            progress(len(chunk))
        yield chunk


def _size_of(source: Source) -> int | None:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, str | os.PathLike):
        return os.stat(source).st_size
    try:
        return os.fstat(source.fileno()).st_size - source.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in _chunks_of(handle):
            digest.update(chunk)
    return digest.hexdigest()


# The operators' client, after TenantClient and TenantryError (it builds on both).
from tenantry.client.platform import PlatformClient  # noqa: E402

__all__ = ["PlatformClient", "TenantClient", "TenantryError"]
