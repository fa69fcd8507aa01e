"""The landing module's resource."""

from tenantry.builtin.landing.models import tenant_summary
from tenantry.endpoint import STRING, STRINGS, TenantResource, operation, schema_object


class Landing(TenantResource):
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

    def get(self):
        return tenant_summary(self.config)
