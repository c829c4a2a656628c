"""An item for sale in one store, and the queries that list items.

Reads run as Core statements on the session's connection
(`db.session.connection().execute`) and build JSON-ready dicts directly: the
ORM's result layer costs more than the rows themselves on the hot paths.
"""
from urllib.parse import quote

from sqlalchemy import bindparam, func, select

from db import db


class ItemModel(db.Model):
    __tablename__ = "items"
    __table_args__ = (
        db.UniqueConstraint("name", name="uq_items_name"),
        {"sqlite_autoincrement": True},
    )

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), nullable=False)
    # Exact in the database; handed to Python as a float because every stored
    # value has at most 2 decimals, which a float prints back exactly.
    price = db.Column(db.Numeric(10, 2, asdecimal=False), nullable=False)
    store_id = db.Column(
        db.Integer, db.ForeignKey("stores.id", name="fk_items_store_id", ondelete="RESTRICT"), nullable=False, index=True
    )
    store = db.relationship("StoreModel", back_populates="items")
    # The stored image's object key (item_images.py), or NULL: no image.
    image_key = db.Column(db.String(100), nullable=True, index=True)

    def json(self):
        return {"id": self.id, "name": self.name, "price": float(self.price), "store_id": self.store_id,
                "image_url": image_url(self.name, self.image_key)}

    @classmethod
    def find_by_name(cls, name):
        return cls.query.filter_by(name=name).one_or_none()

    @classmethod
    def json_by_name(cls, name):
        """The item as a JSON-ready dict, or None. The hot path of GET /item/<name>:
        one SELECT built once, no ORM object."""
        row = db.session.connection().execute(SELECT_BY_NAME, {"name": name}).first()
        return row_json(row) if row else None

    @classmethod
    def rows(cls, *where, limit=None, offset=None):
        """Items as JSON-ready dicts, ordered by id, straight from one SELECT."""
        query = select(*COLUMNS).where(*where).order_by(cls.id).limit(limit).offset(offset)
        return [row_json(row) for row in db.session.connection().execute(query)]

    @classmethod
    def count(cls):
        return db.session.connection().execute(select(func.count()).select_from(cls)).scalar_one()

    @classmethod
    def page(cls, page, per_page):
        """One page of items as dicts, and the total: two statements."""
        return cls.rows(limit=per_page, offset=(page - 1) * per_page), cls.count()

    @classmethod
    def page_of_names(cls, page, per_page):
        query = select(cls.name).order_by(cls.id).limit(per_page).offset((page - 1) * per_page)
        return list(db.session.connection().execute(query).scalars()), cls.count()


COLUMNS = (ItemModel.id, ItemModel.name, ItemModel.price, ItemModel.store_id, ItemModel.image_key)
SELECT_BY_NAME = select(*COLUMNS).where(ItemModel.name == bindparam("name"))


def row_json(row):
    id_, name, price, store_id, image_key = row
    return {"id": id_, "name": name, "price": price, "store_id": store_id,
            "image_url": image_url(name, image_key)}


def image_url(name, image_key):
    """Where the item's image is served, or None. `v` is the stored object's key
    (content hash, upload id, extension): the URL changes whenever the image
    does, so it may be cached for a year, and Nginx can send that file without
    asking the app (deploy/nginx.conf). The name is fully percent-encoded ('/'
    too), so no name can change the path."""
    if image_key is None:
        return None
    return f"/item/{quote(name, safe='')}/image?v={image_key}"
