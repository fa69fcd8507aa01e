"""The files module's resources: uploads, ranged downloads with ETags, and links to files."""

import io
import time

from flask import Response, current_app, request
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    Conflict,
    HTTPException,
    LengthRequired,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.http import is_resource_modified
from werkzeug.wsgi import FileWrapper, LimitedStream, wrap_file

from tenantry.builtin.files.models import (
    FileInUse,
    delete_file,
    find_file,
    link_stored_file,
    list_files,
    open_stored,
    store_file,
    stored_bytes,
)
from tenantry.builtin.links.models import validate_link_options
from tenantry.builtin.links.resources import LINK, link_address
from tenantry.endpoint import (
    INTEGER,
    STRING,
    InsufficientStorage,
    InvalidName,
    OverQuota,
    TenantResource,
    TooLarge,
    auth_required,
    current_tenant,
    json_object,
    no_content,
    operation,
    schema_object,
    validate_name,
)

CHUNK_SIZE = 1024 * 1024
NAME_PARAMETER = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {
        "type": "string",
        "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$",
        "maxLength": 255,
    },
}

FILE = schema_object(
    {"name": STRING, "size": INTEGER, "modified": STRING}, ("name", "size", "modified")
)
STORED = schema_object(
    {"name": STRING, "size": INTEGER, "sha256": STRING}, ("name", "size", "sha256")
)
BINARY = {"binary": True}


def checked_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise BadRequest(str(exc)) from None


def body_chunks():
    """The request body in chunks; the upload is refused unless it arrives whole.

    Under gunicorn werkzeug hands over the raw input (``wsgi.input_terminated``), which just
    ends early when the client goes away: the byte count is checked against Content-Length
    here. werkzeug's own max-length stream is not used: it refuses a body of exactly
    MAX_CONTENT_LENGTH. Storage enforces the limit on what arrives.

    :raises LengthRequired: neither Content-Length nor chunks.
    :raises ClientDisconnected: the body ended early or could not be read (400).
    """
    expected = request.content_length
    if expected is None and not request.environ.get("wsgi.input_terminated"):
        raise LengthRequired("Send a Content-Length or a chunked body.")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if expected is not None and expected > limit:
        raise RequestEntityTooLarge(f"The file is over the limit of {limit} bytes.")
    if request.environ.get("wsgi.input_terminated"):
        stream = request.environ["wsgi.input"]
    else:  # a server that does not end the input itself: never read past Content-Length
        stream = LimitedStream(request.environ["wsgi.input"], expected)
    received = 0
    while True:
        try:
            chunk = stream.read(CHUNK_SIZE)
        except HTTPException:
            raise
        except Exception as exc:  # the server's own error for a broken connection
            raise ClientDisconnected("The upload was cut off.") from exc
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    if expected is not None and received != expected:
        raise ClientDisconnected(f"The upload ended after {received} of its {expected} bytes.")


def file_response(handle, record) -> Response:
    """A stored file's bytes from ``handle`` (open, either backend) with its ETag (the
    sha256), Last-Modified, Range and 304, as ``send_file`` answers for a path.

    The server's file wrapper sends a local file with ``sendfile``. A Range request gets
    werkzeug's own wrapper instead, which seeks to the range's start: through gunicorn's,
    werkzeug reads and drops every byte before it.
    """
    if request.range is not None:
        body = FileWrapper(handle, CHUNK_SIZE)
    else:
        body = wrap_file(request.environ, handle, CHUNK_SIZE)
    response = Response(body, mimetype="application/octet-stream", direct_passthrough=True)
    response.content_length = record.size
    response.last_modified = record.modified_utc
    response.set_etag(record.sha256)
    response.cache_control.no_cache = True
    response.cache_control.max_age = 0
    response.expires = int(time.time())
    try:
        return response.make_conditional(
            request.environ, accept_ranges=True, complete_length=record.size
        )
    except HTTPException:  # 416: nothing will be sent
        handle.close()
        raise


def no_such_file(name: str) -> NotFound:
    return NotFound(f"No such file: {name}")


class FileResource(TenantResource):
    method_decorators = [auth_required()]


class FileList(FileResource):
    openapi = {
        "get": operation(
            "This tenant's files",
            {
                200: schema_object(
                    {"files": {"type": "array", "items": FILE}, "total": INTEGER},
                    ("files", "total"),
                )
            },
        )
    }

    def get(self):
        files = [record.summary() for record in list_files(self.database)]
        return {"files": files, "total": len(files)}


class FileItem(FileResource):
    openapi = {
        "get": operation(
            "The file's bytes (ETag, Range, If-None-Match)",
            {200: BINARY, 206: BINARY},
            errors=(304, 400, 404, 416),
            parameters=(NAME_PARAMETER,),
        ),
        "head": operation(
            "The file's headers",
            {200: None},
            errors=(304, 400, 404, 416),
            parameters=(NAME_PARAMETER,),
        ),
        "put": operation(
            "Upload (create or replace) the file from the raw body",
            {200: STORED, 201: STORED},
            errors=(400, 411, 413, 507),
            parameters=(NAME_PARAMETER,),
            binary_body=True,
        ),
        "delete": operation(
            "Delete the file (409 while a dataset lists it)",
            {204: None},
            errors=(400, 404, 409),
            parameters=(NAME_PARAMETER,),
        ),
    }

    def get(self, name):
        def send(record):
            # The bytes of exactly the sha256 sent as the ETag (blobs never change). A HEAD
            # or a 304 sends none: the blob is not opened (in a bucket, a GET saved).
            unchanged = not is_resource_modified(
                request.environ, etag=record.sha256, last_modified=record.modified_utc
            )
            # (werkzeug answers a Range before a 304: then the bytes are sent)
            if request.method == "HEAD" or (unchanged and request.range is None):
                return file_response(io.BytesIO(), record)
            return file_response(open_stored(self.storage, record), record)

        try:
            return stored_bytes(self.database, checked_name(name), send)
        except FileNotFoundError:
            raise no_such_file(name) from None

    def put(self, name):
        name = checked_name(name)
        config = current_app.config
        try:
            record, created = store_file(
                self.database,
                self.storage,
                name,
                body_chunks(),
                max_size=config["MAX_CONTENT_LENGTH"],
                quota=config["STORAGE_QUOTA"],
                declared=request.content_length,
            )
        except TooLarge as exc:
            raise RequestEntityTooLarge(str(exc)) from None
        except OverQuota as exc:
            raise InsufficientStorage(str(exc)) from None
        body = {"name": record.name, "size": record.size, "sha256": record.sha256}
        return body, 201 if created else 200

    def delete(self, name):
        try:
            deleted = delete_file(
                self.database, self.storage, checked_name(name), current_tenant.file_references
            )
        except FileInUse as exc:
            raise Conflict(str(exc)) from None
        if not deleted:
            raise no_such_file(name)
        return no_content()


class FileLink(FileResource):
    openapi = {
        "post": operation(
            "A one-time link to the file's current bytes",
            {201: LINK},
            errors=(400, 404, 413, 507),
            parameters=(NAME_PARAMETER,),
            body=schema_object(
                {
                    "download": {"type": "boolean"},
                    "ttl": {"type": "integer", "minimum": 1, "maximum": 86400},
                }
            ),
            optional_body=True,
        )
    }

    def post(self, name):
        name = checked_name(name)
        body = json_object(optional=True)
        try:
            download, ttl = validate_link_options(body)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        try:
            link = link_stored_file(
                self.database, self.storage, name, download, ttl, self.config["STORAGE_QUOTA"]
            )
        except FileNotFoundError:
            raise no_such_file(name) from None
        except OverQuota as exc:
            raise InsufficientStorage(str(exc)) from None
        return link_address(link), 201


class FileInfo(FileResource):
    openapi = {
        "get": operation(
            "The file's size, modification time and sha256",
            {
                200: schema_object(
                    {**FILE["properties"], "sha256": STRING}, ("name", "size", "modified", "sha256")
                )
            },
            errors=(400, 404),
            parameters=(NAME_PARAMETER,),
        )
    }

    def get(self, name):
        record = find_file(self.database, checked_name(name))
        if record is None:
            raise no_such_file(name)
        return record.info()
