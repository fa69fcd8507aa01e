"""Uploads in progress hold their declared size against the storage quota.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_reservations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_upload_reservations_expires_at", "upload_reservations", ["expires_at"])


def downgrade() -> None:
    op.drop_table("upload_reservations")
