"""The floor: the least the design card's stack can do to answer the three
reads issue 19 measures, served by the real app's uwsgi.ini (relay included)
from the real app's database. bench/floor.py measures it beside the real app
and the bare one.

The design card fixes the stack: Flask-RESTful resources, Flask-JWT-Extended
tokens, Flask-SQLAlchemy; production adds PostgreSQL and Redis. This app
keeps exactly that and drops everything the real app does on top of it:

- a token is checked for its signature and expiry only (the library's own
  decoding, on every request): no revocation check, no cache;
- one SELECT per answer (two for the stores), rows as plain tuples, dicts
  built in one comprehension, orjson: no ETag, no filters, no paging, no
  count, no request log line, no security headers, no request id;
- on PostgreSQL, a Redis client is made (the real app's rate limits and
  queue need one), so its memory is counted as it is in the real app's.

What it answers is the real app's body for the same request, to the byte
(bench/floor.py checks). The gap between this app and the bare one is the
stack's own; the gap between the real app and this one is what the real app
adds on top: the part its own code can still win back.
"""

import os
import re

import orjson
from flask import Flask
from flask_jwt_extended import JWTManager, jwt_required
from flask_restful import Api, Resource
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Float, bindparam, cast, column, select, table

# As the real app reads it (config.database_url): psycopg2 on PostgreSQL.
DATABASE_URL = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", os.environ["DATABASE_URL"])

app = Flask(__name__)
app.config.update(SQLALCHEMY_DATABASE_URI=DATABASE_URL, JWT_SECRET_KEY=os.environ["JWT_SECRET_KEY"])
db = SQLAlchemy(app)
JWTManager(app)
api = Api(app)
if os.environ.get("REDIS_URL"):
    import redis

    redis_client = redis.Redis.from_url(os.environ["REDIS_URL"])
    redis_client.ping()

items = table("items", column("id"), column("name"), column("price"), column("store_id"), column("image_key"))
stores = table("stores", column("id"), column("name"), column("owner_id"))
ITEM_COLUMNS = (items.c.id, items.c.name, cast(items.c.price, Float), items.c.store_id, items.c.image_key)
ONE_ITEM = select(*ITEM_COLUMNS).where(items.c.name == bindparam("name"))
ALL_ITEMS = select(*ITEM_COLUMNS).order_by(items.c.id)
ALL_STORES = select(*stores.c).order_by(stores.c.id)


@api.representation("application/json")
def output_json(data, code, headers=None):
    return app.response_class(orjson.dumps(data), status=code, headers=headers, mimetype="application/json")


def rows(statement, **params):
    return db.session.connection().execute(statement, params).all()


def items_json(item_rows):
    # The floor serves the seeded items, which have no image: image_url is null.
    return [
        {"id": id_, "name": name, "price": price, "store_id": store_id, "image_url": None}
        for id_, name, price, store_id, _ in item_rows
    ]


class Item(Resource):
    @jwt_required()
    def get(self, name):
        found = rows(ONE_ITEM, name=name)
        if not found:
            return {"message": "Item not found."}, 404
        return items_json(found)[0]


class ItemList(Resource):
    @jwt_required()
    def get(self):
        found = items_json(rows(ALL_ITEMS))
        return {"items": found, "page": 1, "per_page": 1000, "total": len(found)}


class StoreList(Resource):
    def get(self):
        by_store = {}
        for item in items_json(rows(ALL_ITEMS)):
            by_store.setdefault(item["store_id"], []).append(item)
        answer = []
        for id_, name, owner_id in rows(ALL_STORES):
            store_items = by_store.get(id_, [])
            answer.append(
                {"id": id_, "name": name, "owner_id": owner_id, "items": store_items, "items_total": len(store_items)}
            )
        return {"stores": answer, "page": 1, "per_page": 100, "total": len(answer)}


api.add_resource(Item, "/item/<path:name>")
api.add_resource(ItemList, "/items")
api.add_resource(StoreList, "/stores")
api.add_resource(type("Health", (Resource,), {"get": lambda self: {"status": "ok"}}), "/health")
