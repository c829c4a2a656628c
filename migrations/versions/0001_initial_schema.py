"""Initial schema: users, stores, items, revoked sessions.

Every lookup the API does has an index: usernames (case-insensitive, unique),
store and item names (unique), items by store, revoked sessions by id and by
expiry (for the clean-up). Lists are ordered by primary key.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sqlite_autoincrement=True,
    )
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)

    op.create_table(
        "stores",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.UniqueConstraint("name", name="uq_stores_name"),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_items_store_id", ondelete="RESTRICT"),
        sa.UniqueConstraint("name", name="uq_items_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_items_store_id", "items", ["store_id"])

    op.create_table(
        "revoked_sessions",
        sa.Column("sid", sa.String(36), primary_key=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_revoked_sessions_expires_at", "revoked_sessions", ["expires_at"])


def downgrade():
    op.drop_table("revoked_sessions")
    op.drop_table("items")
    op.drop_table("stores")
    op.drop_table("users")
