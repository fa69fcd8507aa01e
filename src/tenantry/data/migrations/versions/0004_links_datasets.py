"""One-time links and the datasets catalogue.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "one_time_links",
        sa.Column("uid", sa.String(64), primary_key=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("download", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
    )
    op.create_index("ix_one_time_links_expires_at", "one_time_links", ["expires_at"])
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "dataset_uses",
        sa.Column(
            "dataset",
            sa.String(255),
            sa.ForeignKey("datasets.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("use", sa.String(255), primary_key=True),
    )
    op.create_table(
        "dataset_files",
        sa.Column(
            "dataset",
            sa.String(255),
            sa.ForeignKey("datasets.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("file", sa.String(255), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_dataset_files_file", "dataset_files", ["file"])


def downgrade() -> None:
    op.drop_table("dataset_files")
    op.drop_table("dataset_uses")
    op.drop_table("datasets")
    op.drop_table("one_time_links")
