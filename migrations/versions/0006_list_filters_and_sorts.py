"""Indexes for the lists' filters and sorts.

Both databases: `items (price, id)` and `items (price DESC, id)`, so a price
range and either price sort (ties by id ascending) read an index in order.

PostgreSQL only:
- the `pg_trgm` extension and GIN trigram indexes on `lower(name)` of items
  and stores, which serve `q` (`lower(name) LIKE '%...%'`);
- `name COLLATE "C"` indexes for the name sorts (code point order, whatever
  the database's own collation is; the unique indexes use that one).
SQLite sorts names by code point with its default collation and the unique
indexes; it has no trigram index, so there `q` reads every name.

The downgrade drops the indexes and leaves the extension, which other
schemas in the same database may use.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

POSTGRESQL_INDEXES = {
    "ix_items_name_trgm": "items USING gin (lower(name) gin_trgm_ops)",
    "ix_stores_name_trgm": "stores USING gin (lower(name) gin_trgm_ops)",
    "ix_items_name_c": 'items (name COLLATE "C")',
    "ix_stores_name_c": 'stores (name COLLATE "C")',
}


def upgrade():
    op.create_index("ix_items_price_id", "items", ["price", "id"])
    op.execute("CREATE INDEX ix_items_price_desc_id ON items (price DESC, id)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, definition in POSTGRESQL_INDEXES.items():
            op.execute(f"CREATE INDEX {name} ON {definition}")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in POSTGRESQL_INDEXES:
            op.execute(f"DROP INDEX {name}")
    op.drop_index("ix_items_price_desc_id", "items")
    op.drop_index("ix_items_price_id", "items")
