"""What the tenant's root says about it, from its settings alone."""


def tenant_summary(config) -> dict:
    """What a tenant's root answers: its slug, display name and enabled blueprints."""
    return {
        "tenant": config["SLUG"],
        "name": config["NAME"],
        "blueprints": list(config["BLUEPRINTS"]),
    }
