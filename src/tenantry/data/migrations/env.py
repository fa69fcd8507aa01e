"""Alembic environment for one tenant database.

tenantry runs alembic programmatically (``TenantDatabase.upgrade``), passing the tenant's
connection and schema in ``config.attributes``; there is no alembic.ini.
"""

from alembic import context

from tenantry.data.db import Base

connection = context.config.attributes["connection"]
schema = context.config.attributes.get("schema")
# The platform's revisions in alembic_version; each endpoint module's in its own table.
version_table = context.config.attributes.get("version_table", "alembic_version")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=version_table,
    version_table_schema=schema,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
