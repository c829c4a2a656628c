"""Item images: the object key of each item's stored image.

`image_key` names the object in image storage (images/storage.py): the SHA-256 of
the re-encoded image, a random upload id and the extension; NULL when the item
has no image. Indexed: the orphan sweep and the "is this object still
referenced" check look rows up by it.

batch_alter_table: SQLite cannot ALTER a table in place beyond ADD COLUMN;
alembic's batch mode copies the table there when it must (the downgrade) and
is a plain ALTER on PostgreSQL. The copy keeps AUTOINCREMENT (ids are never
reused, so an image object's name is never an old item's) only when told:
TABLE_KWARGS.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


TABLE_KWARGS = {"sqlite_autoincrement": True}


def upgrade():
    with op.batch_alter_table("items", table_kwargs=TABLE_KWARGS) as batch:
        batch.add_column(sa.Column("image_key", sa.String(100), nullable=True))
        batch.create_index("ix_items_image_key", ["image_key"])


def downgrade():
    with op.batch_alter_table("items", table_kwargs=TABLE_KWARGS) as batch:
        batch.drop_index("ix_items_image_key")
        batch.drop_column("image_key")
