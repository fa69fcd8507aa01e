"""Background jobs: work of one tenant outside a request, fair between tenants."""
