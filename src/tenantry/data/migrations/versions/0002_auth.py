"""Users, revoked tokens and login failures: what every worker must see the same.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("roles", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("username", name="uq_users_username"),
        # Ids are never handed out again: a deleted user's token must not name a new user.
        sqlite_autoincrement=True,
    )
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Integer, nullable=False),
    )
    op.create_table(
        "login_failures",
        sa.Column("username", sa.String(150), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure", sa.Float, nullable=False),
        sa.Column("locked_until", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("revoked_tokens")
    op.drop_table("users")
