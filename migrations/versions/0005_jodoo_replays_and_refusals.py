"""Jodoo pushes: applied (nonce, timestamp, signature) triples, and refusals.

`jodoo_nonces` holds one row per signed push applied, keyed by a hash of its
(nonce, timestamp, signature): a replay under another X-JDY-DeliverId (or
none) fails on the primary key. Indexed by `seen_at`, so rows past the
signature's five-minute window can be deleted.

`jodoo_deliveries` gains `status` (applied or refused) and `reason`: a push
refused with 403 is recorded with why. Existing rows were all applied.

batch_alter_table: SQLite cannot drop a column in place everywhere; alembic's
batch mode copies the table there when it must (the downgrade) and is a plain
ALTER on PostgreSQL.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "jodoo_nonces",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_jodoo_nonces_seen_at", "jodoo_nonces", ["seen_at"])
    with op.batch_alter_table("jodoo_deliveries") as batch:
        batch.add_column(sa.Column("status", sa.String(10), nullable=False, server_default="applied"))
        batch.add_column(sa.Column("reason", sa.String(200), nullable=True))


def downgrade():
    with op.batch_alter_table("jodoo_deliveries") as batch:
        batch.drop_column("reason")
        batch.drop_column("status")
    op.drop_table("jodoo_nonces")
