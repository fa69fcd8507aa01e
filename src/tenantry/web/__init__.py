"""What every tenant app is made of and endpoint modules build on: the resource layer
(:mod:`.api`), the serving tenant (:mod:`.tenant`), token auth (:mod:`.auth`), the one JSON
error shape (:mod:`.errors`), OpenAPI (:mod:`.openapi`) and pydantic schemas
(:mod:`.schemas`). :mod:`tenantry.endpoint` re-exports the public part."""
