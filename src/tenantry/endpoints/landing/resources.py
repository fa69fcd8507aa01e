from flask_restful import Resource

from tenantry.endpoints.landing.models import tenant_summary
from tenantry.openapi import STRING, STRINGS, operation, schema_object


class Landing(Resource):
    openapi = {
        "get": operation(
            "The tenant's name and enabled blueprints",
            {
                200: schema_object(
                    {"tenant": STRING, "name": STRING, "blueprints": STRINGS},
                    ("tenant", "name", "blueprints"),
                )
            },
            public=True,
        )
    }

    def __init__(self, config):
        self.summary = tenant_summary(config)

    def get(self):
        return self.summary
