"""Items: one item by name (read, create, create-or-update, delete) and the paged list.

Reading an item needs a token; the list's token is optional (names only
without one). Creating, changing, moving and deleting an item need the token
of the owner of the store it is in (and of the store it moves to) or an
admin's; creating needs a fresh token, whether by POST or by PUT.

One item's answers carry its ETag; writes honour If-Match and If-None-Match
(core/conditional.py): a conditional write locks the item's row before it
looks, so its check and its write are one step. The list takes the filters
and sorts of ItemModel.filters and ItemModel.SORTS.
"""

from flask import current_app
from flask_jwt_extended import get_jwt, jwt_required
from flask_restful import Resource
from sqlalchemy import update

from core import arguments, conditional
from core.errors import ApiError, conflict, not_found, validation_error
from core.permissions import current_user_is_admin, fresh_jwt_required, require_fresh_token, require_owner
from db import db
from images import bookkeeping
from models import commit_or_raise
from models.item import ItemModel, item_json
from models.store import StoreModel
from webhooks import outbox

item_parser = arguments.body_parser()
item_parser.add_argument("price", type=arguments.price, required=True)
item_parser.add_argument("store_id", type=arguments.positive_int, required=True)

list_parser = arguments.list_parser(ItemModel.SORTS)
list_parser.add_argument("store_id", type=arguments.query_int(1, arguments.MAX_ID), location="args", help="{error_msg}")
list_parser.add_argument("min_price", type=arguments.price_text, location="args", help="{error_msg}")
list_parser.add_argument("max_price", type=arguments.price_text, location="args", help="{error_msg}")

ITEM_NOT_FOUND = "Item not found."


def no_such_store():
    return validation_error({"store_id": "No store has this id."})


def name_taken(name):
    return conflict(f"An item with name '{name}' already exists.")


def parse_item_for_caller():
    """The body's price and store_id, once the caller may put items in that store."""
    data = item_parser.parse_args()
    found, owner_id = StoreModel.owner_of(data["store_id"])
    if not found:
        raise no_such_store()
    require_owner(owner_id)
    return data


def check_item_quota(store_id, is_admin=None):
    """403 quota_exceeded when the store already holds MAX_ITEMS_PER_STORE items
    (admins are exempt: the caller, or the acting account when `is_admin` is
    given). The store's row lock makes count-then-insert safe against
    concurrent creates into the same store."""
    if current_user_is_admin() if is_admin is None else is_admin:
        return
    StoreModel.lock(StoreModel.id == store_id)
    limit = current_app.config["MAX_ITEMS_PER_STORE"]
    if ItemModel.count(ItemModel.store_id == store_id) >= limit:
        db.session.rollback()
        raise ApiError(403, "quota_exceeded", f"A store may hold at most {limit} items.")


def insert_item(name, data):
    """Insert and commit, letting the database's constraints decide races:
    409 when the name was taken meanwhile, 400 when the store vanished."""
    try:
        check_item_quota(data["store_id"])
    except ApiError:
        if ItemModel.json_by_name(name) is not None:
            raise name_taken(name) from None  # the truer answer: it exists anyway
        raise
    item = ItemModel(name=name, price=data["price"], store_id=data["store_id"])
    db.session.add(item)
    outbox.record("item.created", item)
    try:
        commit_or_raise(name_taken(name))
    except ApiError:
        if ItemModel.json_by_name(name) is None:
            raise no_such_store() from None
        raise
    return item_json(item)


def update_item(placement, data):
    """Update the item where the caller saw it, and commit: the item's JSON,
    or None when it moved or vanished meanwhile (the caller looks again)."""
    if placement.store_id != data["store_id"]:
        check_item_quota(data["store_id"])
    values = {"price": data["price"], "store_id": data["store_id"]}
    updated = db.session.execute(
        update(ItemModel).where(ItemModel.id == placement.id, ItemModel.store_id == placement.store_id).values(**values)
    ).rowcount
    if updated != 1:
        db.session.rollback()
        return None
    item = {**item_json(placement), "price": float(data["price"]), "store_id": data["store_id"]}
    outbox.record("item.updated", item)
    commit_or_raise(no_such_store())
    return item


def lock_if_conditional(name):
    """A conditional write locks the item's row before it looks (see the docstring)."""
    if conditional.has_write_preconditions():
        ItemModel.lock(ItemModel.name == name)


class Item(Resource):
    @jwt_required()
    def get(self, name):
        item = ItemModel.json_by_name(arguments.item_name(name))
        if item is None:
            raise not_found(ITEM_NOT_FOUND)
        return conditional.tagged(item)

    @fresh_jwt_required
    def post(self, name):
        name = arguments.item_name(name)
        data = parse_item_for_caller()
        if conditional.has_write_preconditions():
            ItemModel.lock(ItemModel.name == name)
            conditional.check_write(ItemModel.json_by_name(name))
        # No look-before: the unique constraint answers "name taken" (409).
        return conditional.tagged(insert_item(name, data), 201)

    @jwt_required()
    def put(self, name):
        name = arguments.item_name(name)
        data = parse_item_for_caller()
        # Look, check, then write only where we looked: a concurrent PUT that
        # moves, deletes or creates the item makes us look again.
        for _ in range(3):
            lock_if_conditional(name)
            placement = StoreModel.item_with_owner(name)
            if placement is not None:
                require_owner(placement.owner_id)  # of the store it is in now
                conditional.check_write(item_json(placement))
                item = update_item(placement, data)
                if item is not None:
                    return conditional.tagged(item)
                continue
            require_fresh_token()  # this PUT creates the item
            conditional.check_write(None)
            try:
                return conditional.tagged(insert_item(name, data), 201)
            except ApiError as e:
                if e.status != 409:
                    raise
                # Created concurrently: update it instead (after the checks).
        raise conflict("The item changed concurrently; try again.")

    @jwt_required()
    def delete(self, name):
        name = arguments.item_name(name)
        lock_if_conditional(name)
        placement = StoreModel.item_with_owner(name)
        if placement is None:
            conditional.check_write(None)  # If-Match on nothing: 412, not 404
            raise not_found(ITEM_NOT_FOUND)
        require_owner(placement.owner_id)
        conditional.check_write(item_json(placement))
        if not ItemModel.delete_by_id(placement.id):
            # A concurrent request deleted it first: its answer and its event stand.
            db.session.rollback()
            raise not_found(ITEM_NOT_FOUND)
        outbox.record("item.deleted", item_json(placement))
        db.session.commit()
        bookkeeping.discard(placement.image_key)  # after the commit: never a row without its object
        return {"message": "Item deleted."}, 200


class ItemList(Resource):
    @jwt_required(optional=True)
    def get(self):
        args = list_parser.parse_args()
        if None not in (args["min_price"], args["max_price"]) and args["min_price"] > args["max_price"]:
            raise validation_error({"min_price": "Must not be greater than max_price."})
        page, per_page = args["page"], args["per_page"]
        where = ItemModel.filters(args["q"], args["min_price"], args["max_price"], args["store_id"])
        order_by = ItemModel.ordering(args["sort"], filtered_by_name=args["q"] is not None)
        if get_jwt():
            items, total = ItemModel.page(page, per_page, where, order_by)
            return arguments.paged("items", items, page, per_page, total)
        names, total = ItemModel.page(page, per_page, where, order_by, names_only=True)
        return arguments.paged("items", names, page, per_page, total, message="More data available if you log in.")
