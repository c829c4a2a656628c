"""Stores have owners; tokens are bound to accounts; sessions can all be ended.

- `stores.owner_id`: the user who created the store. Stores made before this
  migration have none (NULL): only admins may change them. Deleting a user
  leaves their stores ownerless (ON DELETE SET NULL).
- `users.account_key`: a random value made once per account and put into its
  tokens. Ids are not identities (a restore or a sequence reset hands an old
  id to a new account); this key never repeats, so a token only ever acts for
  the account it was issued to.
- `users.session_generation`: bumped by a password change or "end all
  sessions"; tokens carry the generation they were issued in.

Revision ID: 0002
Revises: 0001
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade():
    # SQLite rebuilds the table for these changes: keep AUTOINCREMENT (ids of
    # deleted rows are never handed out again).
    with op.batch_alter_table("users", table_kwargs=KEEP_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("account_key", sa.String(32), nullable=True))
        batch.add_column(sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"))
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("account_key", sa.String))
    conn = op.get_bind()
    for (user_id,) in conn.execute(sa.select(users.c.id)).all():
        conn.execute(users.update().where(users.c.id == user_id).values(account_key=secrets.token_hex(16)))
    # SQLite rebuilds the table for these changes, and the rebuild cannot
    # carry an index on an expression: drop it and make it again after.
    op.execute("DROP INDEX IF EXISTS uq_users_username_lower")
    with op.batch_alter_table("users", table_kwargs=KEEP_AUTOINCREMENT) as batch:
        batch.alter_column("account_key", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_users_account_key", ["account_key"])
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)

    # A store's first items by id, read with a LIMIT (store answers embed them).
    op.create_index("ix_items_store_id_id", "items", ["store_id", "id"])

    with op.batch_alter_table("stores", table_kwargs=KEEP_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_stores_owner_id", "users", ["owner_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_stores_owner_id", ["owner_id"])


def downgrade():
    op.drop_index("ix_items_store_id_id", "items")
    with op.batch_alter_table("stores", table_kwargs=KEEP_AUTOINCREMENT) as batch:
        batch.drop_index("ix_stores_owner_id")
        batch.drop_constraint("fk_stores_owner_id", type_="foreignkey")
        batch.drop_column("owner_id")
    # As in upgrade(): the SQLite rebuild cannot carry the expression index.
    op.execute("DROP INDEX IF EXISTS uq_users_username_lower")
    with op.batch_alter_table("users", table_kwargs=KEEP_AUTOINCREMENT) as batch:
        batch.drop_constraint("uq_users_account_key", type_="unique")
        batch.drop_column("session_generation")
        batch.drop_column("account_key")
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
