"""Refresh rotation: per token family (its jti), how many times it was refreshed. A
refresh must present the family's latest token; an older one, presented again, is a
stolen token in use, and revokes every token of its user.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_refreshes",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("token_refreshes")
