"""A user's token generation: tokens name it, and a disable or a new password moves it on,
so the tokens issued before stay dead when the user is enabled again.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # ALTER TABLE is not rewritten by the engine's schema_translate_map (CREATE TABLE is):
    # name the tenant's schema (None on SQLite) as env.py gave it to alembic.
    return op.get_context().opts.get("version_table_schema")


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("token_generation", sa.Integer, nullable=False, server_default="0"),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_column("users", "token_generation", schema=_schema())
