from flask import Response, current_app, request, send_file
from flask_restful import Resource
from werkzeug.exceptions import BadRequest, LengthRequired, NotFound, RequestEntityTooLarge

from tenantry.auth import auth_required
from tenantry.endpoints.files.models import delete_file, find_file, list_files, store_file
from tenantry.errors import InsufficientStorage
from tenantry.storage import CHUNK_SIZE, InvalidName, OverQuota, TooLarge, validate_name


def checked_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise BadRequest(str(exc)) from None


def body_chunks():
    """The request body in chunks, without werkzeug's max-length stream for chunked bodies:
    that one refuses a body of exactly MAX_CONTENT_LENGTH (it cannot see the end coming).
    Storage enforces the limit instead. :raises LengthRequired: neither length nor chunks.
    """
    if request.content_length is None:
        if not request.environ.get("wsgi.input_terminated"):
            raise LengthRequired("Send a Content-Length or a chunked body.")
        stream = request.environ["wsgi.input"]
    else:
        stream = request.stream  # 413 at once when Content-Length is over the limit
    return iter(lambda: stream.read(CHUNK_SIZE), b"")


def no_such_file(name: str) -> NotFound:
    return NotFound(f"No such file: {name}")


class FileResource(Resource):
    method_decorators = [auth_required()]

    def __init__(self, database, storage):
        self.database = database
        self.storage = storage


class FileList(FileResource):
    def get(self):
        files = [record.summary() for record in list_files(self.database)]
        return {"files": files, "total": len(files)}


class FileItem(FileResource):
    def get(self, name):
        record = find_file(self.database, checked_name(name))
        if record is None:
            raise no_such_file(name)
        try:
            return send_file(
                self.storage.path_of(name),
                mimetype="application/octet-stream",
                conditional=True,
                etag=record.sha256,
                last_modified=record.modified_utc,
                max_age=0,
            )
        except FileNotFoundError:  # deleted since the record was read
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
            )
        except TooLarge as exc:
            raise RequestEntityTooLarge(str(exc)) from None
        except OverQuota as exc:
            raise InsufficientStorage(str(exc)) from None
        body = {"name": record.name, "size": record.size, "sha256": record.sha256}
        return body, 201 if created else 200

    def delete(self, name):
        if not delete_file(self.database, self.storage, checked_name(name)):
            raise no_such_file(name)
        return Response(status=204)


class FileInfo(FileResource):
    def get(self, name):
        record = find_file(self.database, checked_name(name))
        if record is None:
            raise no_such_file(name)
        return record.info()
