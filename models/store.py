"""A store, which has many items, and the queries that list stores."""
from sqlalchemy import func, select

from db import db
from models.item import ItemModel


class StoreModel(db.Model):
    __tablename__ = "stores"
    __table_args__ = (
        db.UniqueConstraint("name", name="uq_stores_name"),
        {"sqlite_autoincrement": True},
    )

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), nullable=False)
    # A store has many items. Reads build JSON with Core queries (below), so
    # the relationship is never loaded on a hot path; the database refuses to
    # delete a store that still has items (ondelete RESTRICT).
    items = db.relationship("ItemModel", back_populates="store", order_by="ItemModel.id",
                            passive_deletes="all")

    @classmethod
    def find_by_name(cls, name):
        return cls.query.filter_by(name=name).one_or_none()

    @classmethod
    def json_by_name(cls, name):
        """The store with its items as JSON-ready dicts, or None: two SELECTs, no ORM objects."""
        row = db.session.connection().execute(select(cls.id, cls.name).where(cls.name == name)).first()
        if row is None:
            return None
        return {"id": row.id, "name": row.name, "items": ItemModel.rows(ItemModel.store_id == row.id)}

    @classmethod
    def exists(cls, store_id):
        return db.session.connection().execute(select(cls.id).where(cls.id == store_id)).first() is not None

    def has_items(self):
        query = select(ItemModel.id).where(ItemModel.store_id == self.id).limit(1)
        return db.session.connection().execute(query).first() is not None

    @classmethod
    def page(cls, page, per_page):
        """One page of stores with their items as JSON-ready dicts, and the total.

        Three statements whatever the page size: the count, the stores, and
        every item of those stores at once (no query per store).
        """
        total = db.session.connection().execute(select(func.count()).select_from(cls)).scalar_one()
        stores = db.session.connection().execute(
            select(cls.id, cls.name).order_by(cls.id).limit(per_page).offset((page - 1) * per_page)
        ).all()
        by_id = {id_: {"id": id_, "name": name, "items": []} for id_, name in stores}
        if by_id:
            for item in ItemModel.rows(ItemModel.store_id.in_(by_id)):
                by_id[item["store_id"]]["items"].append(item)
        return list(by_id.values()), total
