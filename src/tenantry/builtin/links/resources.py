"""The links module's resource: redeeming a one-time link (the uid is the capability)."""

from flask import Response, request
from werkzeug.exceptions import BadRequest, Gone, NotFound
from werkzeug.wsgi import wrap_file

from tenantry.builtin.links.models import LinkError, OneTimeLink, find_live_link, redeem_link
from tenantry.endpoint import STRING, TenantResource, operation, schema_object

# Bytes per read of a link's snapshot (werkzeug's default is 8 KiB).
CHUNK_SIZE = 1024 * 1024
LINK = schema_object({"addr": STRING, "expires": STRING}, ("addr", "expires"))


def link_address(link: OneTimeLink) -> dict:
    """``addr`` relative to the host the client used: no tenant prefix under host routing."""
    return {"addr": f"{request.script_root}/cached-file?uid={link.uid}", "expires": link.expires}


def link_error(exc: LinkError):
    return (NotFound if exc.status == 404 else Gone)(str(exc))


class CachedFile(TenantResource):
    """Public: the uid is the capability. GET uses the link up; HEAD only looks."""

    openapi = {
        method: operation(
            summary,
            {200: {"binary": True} if method == "get" else None},
            errors=(400, 404, 410),
            parameters=(
                {
                    "name": "uid",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                },
            ),
            public=True,
        )
        for method, summary in [
            ("get", "The linked bytes, once"),
            ("head", "Whether the link can still be used (does not use it up)"),
        ]
    }

    def get(self):
        uid = request.args.get("uid")
        if not uid:
            raise BadRequest("The uid query parameter is required.")
        try:
            if request.method == "HEAD":
                link, handle = find_live_link(self.database, self.storage, uid), None
            else:
                link, handle = redeem_link(self.database, self.storage, uid)
        except LinkError as exc:
            raise link_error(exc) from None
        body = wrap_file(request.environ, handle, CHUNK_SIZE) if handle is not None else b""
        response = Response(body, mimetype="application/octet-stream", direct_passthrough=True)
        response.content_length = link.size
        response.headers["Cache-Control"] = "no-store"
        if link.download:
            response.headers.set("Content-Disposition", "attachment", filename=link.filename)
        return response
