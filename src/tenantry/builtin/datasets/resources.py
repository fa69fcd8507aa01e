"""The datasets module's resources: thin HTTP over :mod:`.models`."""

from flask import request
from pydantic import BaseModel, Field
from werkzeug.exceptions import BadRequest, Conflict, NotFound

from tenantry.builtin.datasets.models import (
    MAX_ITEMS,
    MAX_LIMIT,
    DatasetError,
    DatasetExists,
    UnknownDataset,
    create_dataset,
    delete_dataset,
    get_dataset,
    link_zip,
    search_datasets,
)
from tenantry.builtin.files.resources import NAME_PARAMETER
from tenantry.builtin.links.models import DEFAULT_TTL
from tenantry.builtin.links.resources import LINK, link_address
from tenantry.endpoint import (
    INTEGER,
    STRING,
    STRINGS,
    InsufficientStorage,
    OverQuota,
    TenantResource,
    auth_required,
    json_object,
    no_content,
    operation,
    query_number,
    schema_object,
)

DATASET = schema_object(
    {"name": STRING, "description": STRING, "uses": STRINGS, "files": STRINGS, "size": INTEGER},
    ("name", "description", "uses", "files", "size"),
)
NAME_SCHEMA = {**NAME_PARAMETER["schema"], "not": {"const": "download"}}
NAME = {**NAME_PARAMETER, "schema": NAME_SCHEMA}
FILE_NAMES = {"type": "array", "items": NAME_PARAMETER["schema"]}
USES = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 255}}


def no_such_dataset(name: str) -> NotFound:
    return NotFound(f"No such dataset: {name}")


class DatasetList(TenantResource):
    openapi = {
        "get": operation(
            "Datasets having all `uses`, matching `q`, by name; `total` counts all matches",
            {
                200: schema_object(
                    {"data": {"type": "array", "items": DATASET}, "total": INTEGER},
                    ("data", "total"),
                )
            },
            errors=(400,),
            parameters=(
                {
                    "name": "uses",
                    "in": "query",
                    "schema": {"type": "array", "items": STRING},
                    "style": "form",
                    "explode": True,
                },
                {"name": "q", "in": "query", "schema": STRING},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ),
        ),
        "post": operation(
            "Create a dataset (admin)",
            {201: DATASET},
            errors=(400, 403, 409, 413),
            body=schema_object(
                {"name": NAME_SCHEMA, "description": STRING, "uses": USES, "files": FILE_NAMES},
                ("name",),
            ),
        ),
    }

    @auth_required()
    def get(self):
        uses, text = request.args.getlist("uses"), request.args.get("q")
        if any("\x00" in value for value in [*uses, text or ""]) or len(uses) > MAX_ITEMS:
            raise BadRequest(f"uses (at most {MAX_ITEMS}) and q must be text without NUL.")
        page, total = search_datasets(
            self.database,
            uses=uses,
            text=text,
            limit=query_number("limit", 50, 1, MAX_LIMIT),
            offset=query_number("offset", 0, 0, 2**31),
        )
        return {"data": page, "total": total}

    @auth_required("admin")
    def post(self):
        try:
            return create_dataset(self.database, self.storage, json_object()), 201
        except DatasetError as exc:
            raise BadRequest(str(exc)) from None
        except DatasetExists as exc:
            raise Conflict(str(exc)) from None


class DatasetItem(TenantResource):
    openapi = {
        "get": operation("One dataset", {200: DATASET}, errors=(404, 405), parameters=(NAME,)),
        "delete": operation(
            "Delete a dataset (admin)", {204: None}, errors=(403, 404, 405), parameters=(NAME,)
        ),
    }

    @auth_required()
    def get(self, name):
        try:
            return get_dataset(self.database, name)
        except UnknownDataset:
            raise no_such_dataset(name) from None

    @auth_required("admin")
    def delete(self, name):
        try:
            delete_dataset(self.database, name)
        except UnknownDataset:
            raise no_such_dataset(name) from None
        return no_content()


class DatasetsToZip(BaseModel):
    datasets: list[str] = Field(min_length=1, max_length=MAX_ITEMS)


class DatasetDownload(TenantResource):
    openapi = {
        "post": operation(
            "A one-time link to a zip of the datasets' files",
            {201: LINK},
            errors=(404, 413, 507),
            body=DatasetsToZip,
        )
    }

    @auth_required()
    def post(self):
        names = json_object(DatasetsToZip).datasets
        try:
            link = link_zip(
                self.database, self.storage, names, self.config["STORAGE_QUOTA"], DEFAULT_TTL
            )
        except UnknownDataset as exc:
            raise no_such_dataset(str(exc)) from None
        except OverQuota as exc:
            raise InsufficientStorage(str(exc)) from None
        return link_address(link), 201
