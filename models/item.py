"""An item for sale in one store, and the queries on items.

Reads run as Core statements on the session's connection
(`db.session.connection().execute`; the lists take the driver's own tuples,
models/listing.plain_rows) and build JSON-ready dicts with `items_json`, the
one place that shapes an item for every response (`item_json` for one): the
ORM's result layer costs more than the rows themselves on the hot paths.
"""

from urllib.parse import quote

from sqlalchemy import Float, bindparam, cast, delete, func, select, update

from db import db
from models.listing import code_point_order, name_contains, one_page, plain_rows, sorted_after_matching


class ItemModel(db.Model):
    __tablename__ = "items"
    __table_args__ = (
        db.UniqueConstraint("name", name="uq_items_name"),
        # A store's first items by id (store answers embed them, with a LIMIT).
        db.Index("ix_items_store_id_id", "store_id", "id"),
        # The price filters and both price sorts (ties by id ascending). On
        # PostgreSQL migration 0006 adds what only it has: `name_lower` with a
        # trigram index for `q`, and a `COLLATE "C"` index for the name sorts
        # (models/listing.py).
        db.Index("ix_items_price_id", "price", "id"),
        db.Index("ix_items_price_desc_id", db.text("price DESC"), "id"),
        {"sqlite_autoincrement": True},
    )

    # GET /items' `sort` values, the default first.
    SORTS = ("id", "-id", "name", "-name", "price", "-price")

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), nullable=False)
    # Exact in the database; handed to Python as a float because every stored
    # value has at most 2 decimals, which a float prints back exactly.
    price = db.Column(db.Numeric(10, 2, asdecimal=False), nullable=False)
    store_id = db.Column(
        db.Integer,
        db.ForeignKey("stores.id", name="fk_items_store_id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    )
    store = db.relationship("StoreModel", back_populates="items")
    # The stored image's object key (images/bookkeeping.py), or NULL: no image.
    image_key = db.Column(db.String(100), nullable=True, index=True)

    def json(self):
        return item_json(self)

    @classmethod
    def find_by_name(cls, name):
        return cls.query.filter_by(name=name).one_or_none()

    @classmethod
    def json_by_name(cls, name):
        """The item as a JSON-ready dict, or None. The hot path of GET /item/<name>:
        one SELECT built once, no ORM object."""
        row = db.session.connection().execute(SELECT_BY_NAME, {"name": name}).first()
        return item_json(row) if row else None

    @classmethod
    def lock(cls, *where):
        """Take the matching row's lock until the transaction ends (see
        UserModel.lock): what a conditional write reads next cannot change
        before it writes."""
        db.session.execute(update(cls).where(*where).values(id=cls.id))

    @classmethod
    def delete_by_id(cls, item_id):
        return db.session.execute(delete(cls).where(cls.id == item_id)).rowcount == 1

    @classmethod
    def rows(cls, *where, limit=None, offset=None, order_by=None):
        """Items as JSON-ready dicts, ordered by id (or `order_by`), straight from one SELECT."""
        query = select(*ITEM_COLUMNS).where(*where).order_by(*(order_by or [cls.id])).limit(limit).offset(offset)
        return items_json(plain_rows(query))

    @classmethod
    def count(cls, *where):
        query = select(func.count()).select_from(cls).where(*where)
        return db.session.connection().execute(query).scalar_one()

    @classmethod
    def filters(cls, q=None, min_price=None, max_price=None, store_id=None):
        """The WHERE clauses of GET /items' filters (those given)."""
        where = []
        if q is not None:
            where.append(name_contains(cls, q))
        if min_price is not None:
            where.append(cls.price >= min_price)
        if max_price is not None:
            where.append(cls.price <= max_price)
        if store_id is not None:
            where.append(cls.store_id == store_id)
        return where

    @classmethod
    def ordering(cls, sort, filtered_by_name=False):
        """ORDER BY for GET /items' `sort` (one of SORTS): ties by id ascending.
        Names are unique, so a name sort needs no tie-breaker, and leaving it out
        lets PostgreSQL walk the name index either way. With `q`, sorted after
        matching (models/listing.py)."""
        key = {"id": cls.id, "name": code_point_order(cls.name), "price": cls.price}[sort.lstrip("-")]
        if filtered_by_name:
            key = sorted_after_matching(key)
        order = [key.desc() if sort.startswith("-") else key.asc()]
        return order + [cls.id.asc()] if sort.lstrip("-") == "price" else order

    @classmethod
    def page(cls, page, per_page, where=(), order_by=(), names_only=False):
        """One page of the items matching `where` (dicts, or just names) in
        `order_by` (default: by id), and their total: the page and, unless it
        is a first page with room to spare, the count (models/listing.one_page)."""
        order_by = order_by or [cls.id]

        def fetch(limit, offset):
            if names_only:
                query = select(cls.name).where(*where).order_by(*order_by).limit(limit).offset(offset)
                return list(db.session.connection().execute(query).scalars())
            return cls.rows(*where, limit=limit, offset=offset, order_by=order_by)

        return one_page(fetch, lambda: cls.count(*where), page, per_page)


# The price read as a float by the database: psycopg2 would otherwise build a
# Decimal per row for Python to convert (the same float: both round correctly).
ITEM_COLUMNS = (
    ItemModel.id,
    ItemModel.name,
    cast(ItemModel.price, Float).label("price"),
    ItemModel.store_id,
    ItemModel.image_key,
)
SELECT_BY_NAME = select(*ITEM_COLUMNS).where(ItemModel.name == bindparam("name"))


def item_json(item):
    """The one shape of an item in every response: `item` is a model, or a row
    starting with ITEM_COLUMNS."""
    if isinstance(item, ItemModel):
        item = (item.id, item.name, item.price, item.store_id, item.image_key)
    return items_json([item[:5]])[0]


def items_json(rows):
    """item_json of each row, rows of exactly ITEM_COLUMNS: one comprehension
    unpacking by position, for the lists' up to 1,000 items (half the time of a
    call per row)."""
    return [
        {
            "id": id_,
            "name": name,
            "price": float(price),
            "store_id": store_id,
            "image_url": None if image_key is None else image_url(name, image_key),
        }
        for id_, name, price, store_id, image_key in rows
    ]


def image_url(name, image_key):
    """Where the item's image is served, or None. `v` is the stored object's key
    (content hash, upload id, extension): the URL changes whenever the image
    does, so it may be cached for a year, and Nginx can send that file without
    asking the app (deploy/nginx.conf). The name is fully percent-encoded ('/'
    too), so no name can change the path."""
    if image_key is None:
        return None
    return f"/item/{quote(name, safe='')}/image?v={image_key}"
