"""The status module's resource."""

from tenantry.builtin.status.models import run_checks
from tenantry.endpoint import STRING, TenantResource, error_response, operation, schema_object


class Status(TenantResource):
    openapi = {
        "get": operation(
            "Health of the tenant's database and storage (503 names a failing check)",
            {
                200: schema_object(
                    {"success": STRING, "tenant": STRING, "checks": {"type": "object"}},
                    ("success", "tenant", "checks"),
                )
            },
            public=True,
        )
    }

    def get(self):
        checks = run_checks(self.tenant)
        failing = [name for name, result in checks.items() if result != "ok"]
        if failing:
            return error_response(503, f"Failing checks: {', '.join(failing)}", checks=checks)
        return {"success": "OK", "tenant": self.config["SLUG"], "checks": checks}
