"""The request path: dispatch to a tenant, its app (built, cached, limited), and what every
tenant app shares (auth, the one error shape, the resource layer, OpenAPI, schemas)."""
