"""A store, which has many items and one owner, and the queries on stores.

Reads run as Core statements and build JSON-ready dicts with `store_json`,
the one function that shapes a store for every response.
"""

from sqlalchemy import bindparam, delete, func, select, true, update

from db import db
from models.item import ITEM_COLUMNS, ItemModel, items_json
from models.listing import (
    code_point_order,
    is_postgresql,
    name_contains,
    one_page,
    plain_rows,
    sorted_after_matching,
)


class StoreModel(db.Model):
    __tablename__ = "stores"
    __table_args__ = (
        db.UniqueConstraint("name", name="uq_stores_name"),
        {"sqlite_autoincrement": True},
    )

    # GET /stores' `sort` values, the default first.
    SORTS = ("id", "-id", "name", "-name")

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), nullable=False)
    # Who may change the store and its items (with admins). NULL for stores
    # made before stores had owners, and for stores whose owner was deleted.
    owner_id = db.Column(
        db.Integer, db.ForeignKey("users.id", name="fk_stores_owner_id", ondelete="SET NULL"), index=True
    )
    # A store has many items. Reads build JSON with Core queries (below), so
    # the relationship is never loaded on a hot path; the database refuses to
    # delete a store that still has items (ondelete RESTRICT).
    items = db.relationship("ItemModel", back_populates="store", order_by="ItemModel.id", passive_deletes="all")

    @classmethod
    def find_by_name(cls, name):
        return cls.query.filter_by(name=name).one_or_none()

    @classmethod
    def owner_of(cls, store_id):
        """(True, owner_id) for an existing store, (False, None) otherwise: one SELECT."""
        row = db.session.connection().execute(select(cls.owner_id).where(cls.id == store_id)).first()
        return (True, row.owner_id) if row else (False, None)

    @classmethod
    def item_with_owner(cls, item_name):
        """The named item's row with its store's `owner_id` (who may change
        it), or None: one SELECT."""
        query = (
            select(*ITEM_COLUMNS, cls.owner_id)
            .join(cls, cls.id == ItemModel.store_id)
            .where(ItemModel.name == item_name)
        )
        return db.session.connection().execute(query).first()

    @classmethod
    def json_by_name(cls, name, embedded):
        """The store with its first `embedded` items, or None: two SELECTs."""
        query = STORES_WITH_ITEMS_TOTAL.where(cls.name == name)
        row = db.session.connection().execute(query).first()
        if row is None:
            return None
        items = ItemModel.rows(ItemModel.store_id == row.id, limit=embedded)
        return store_json(row, items, row.items_total)

    @classmethod
    def count(cls, *where):
        query = select(func.count()).select_from(cls).where(*where)
        return db.session.connection().execute(query).scalar_one()

    @classmethod
    def count_owned_by(cls, user_id):
        return cls.count(cls.owner_id == user_id)

    @classmethod
    def lock(cls, *where):
        """Take the matching store's row lock until the transaction ends (see UserModel.lock)."""
        db.session.execute(update(cls).where(*where).values(id=cls.id))

    @classmethod
    def delete_by_id(cls, store_id):
        """Delete (uncommitted); False when no row was there to delete."""
        return db.session.execute(delete(cls).where(cls.id == store_id)).rowcount == 1

    def has_items(self):
        query = select(ItemModel.id).where(ItemModel.store_id == self.id).limit(1)
        return db.session.connection().execute(query).first() is not None

    @classmethod
    def filters(cls, q=None, owner_id=None):
        """The WHERE clauses of GET /stores' filters (those given)."""
        where = []
        if q is not None:
            where.append(name_contains(cls, q))
        if owner_id is not None:
            where.append(cls.owner_id == owner_id)
        return where

    @classmethod
    def ordering(cls, sort, filtered_by_name=False):
        """ORDER BY for GET /stores' `sort` (one of SORTS; names are unique:
        no tie-breaker needed). With `q`, sorted after matching (models/listing.py)."""
        key = cls.id if sort.lstrip("-") == "id" else code_point_order(cls.name)
        if filtered_by_name:
            key = sorted_after_matching(key)
        return key.desc() if sort.startswith("-") else key.asc()

    @classmethod
    def page(cls, page, per_page, embedded, where=(), order_by=None):
        """One page of the stores matching `where` in `order_by` (default: by
        id), each with its first `embedded` items, and their total.

        At most three statements whatever the data: the stores (with their
        item counts), the count unless a first page has room to spare
        (models/listing.one_page), and the embedded items of all of them at
        once. A page past the end costs only the count.
        """
        order_by = cls.id if order_by is None else order_by
        query = STORES_WITH_ITEMS_TOTAL.where(*where).order_by(order_by)

        def fetch(limit, offset):
            return db.session.connection().execute(query.limit(limit).offset(offset)).all()

        stores, total = one_page(fetch, lambda: cls.count(*where), page, per_page)
        if not stores:
            return [], total
        items_by_store = {store.id: [] for store in stores}
        if not all(store.items_total <= embedded for store in stores):
            rows = plain_rows(
                first_items_of_each(select(cls.id.label("store_id")).where(cls.id.in_(items_by_store)), embedded)
            )
        elif not where and len(stores) == total:
            # Every store there is, each with all its items: every item, read
            # in table order (no index lookup per row, nothing to sort).
            rows = plain_rows(ALL_ITEMS)
        else:
            rows = plain_rows(ITEMS_OF_STORES, {"store_ids": list(items_by_store)})
        for item in items_json(rows):
            # None: a store made since the stores were read, not on this page.
            store_items = items_by_store.get(item["store_id"])
            if store_items is not None:
                store_items.append(item)
        return [store_json(store, items_by_store[store.id], store.items_total) for store in stores], total


STORE_COLUMNS = (StoreModel.id, StoreModel.name, StoreModel.owner_id)
STORES_WITH_ITEMS_TOTAL = select(
    *STORE_COLUMNS,
    select(func.count()).where(ItemModel.store_id == StoreModel.id).scalar_subquery().label("items_total"),
)
# Every item of the stores `store_ids`, store by store, each store's by id:
# built and compiled once (the ids are one expanding parameter), and read in
# the order of the (store_id, id) index, so SQLite sorts nothing.
ITEMS_OF_STORES = (
    select(*ITEM_COLUMNS)
    .where(ItemModel.store_id.in_(bindparam("store_ids", expanding=True)))
    .order_by(ItemModel.store_id, ItemModel.id)
)
ALL_ITEMS = select(*ITEM_COLUMNS).order_by(ItemModel.id)


def first_items_of_each(store_ids, embedded):
    """The first `embedded` items (by id) of each store in `store_ids`, each
    found through its own LIMIT on the (store_id, id) index: the query reads
    what it returns, never all of a big store's items. PostgreSQL says so with
    a LATERAL join; SQLite (no LATERAL) with a correlated `IN (... LIMIT)`,
    which PostgreSQL would instead run once per item row."""
    stores = store_ids.subquery("page_stores")
    if is_postgresql():
        firsts = (
            select(*ITEM_COLUMNS)
            .where(ItemModel.store_id == stores.c.store_id)
            .order_by(ItemModel.id)
            .limit(embedded)
            .lateral("firsts")
        )
        return select(*firsts.c).select_from(stores).join(firsts, true()).order_by(firsts.c.id)
    first_ids = (
        select(ItemModel.id)
        .where(ItemModel.store_id == stores.c.store_id)
        .order_by(ItemModel.id)
        .limit(embedded)
        .correlate(stores)
    )
    return select(*ITEM_COLUMNS).select_from(stores).join(ItemModel, ItemModel.id.in_(first_ids)).order_by(ItemModel.id)


def store_json(store, items, items_total):
    """The one shape of a store in every response: `store` is a row or a model."""
    return {"id": store.id, "name": store.name, "owner_id": store.owner_id, "items": items, "items_total": items_total}
