"""A random key per user, carried by its tokens: a user id handed out again (after a
restore of an older archive) is another user, and the old tokens do not name it. Users
from before keep an empty key, which their tokens (without the claim) match.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # As in 0006: ALTER TABLE is not rewritten by the engine's schema_translate_map.
    return op.get_context().opts.get("version_table_schema")


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("token_key", sa.String(32), nullable=False, server_default=""),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_column("users", "token_key", schema=_schema())
