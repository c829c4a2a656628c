"""Stores: one store by name (read, create, delete) and the paged list of stores.

Anyone may read. Any user may create a store and becomes its owner; only the
owner or an admin may delete it.

One store's answers carry its ETag, and its writes honour If-Match and
If-None-Match, as an item's do (resources/item.py). The list takes the
filters and sorts of StoreModel.filters and StoreModel.SORTS.
"""

from flask import current_app
from flask_jwt_extended import jwt_required
from flask_restful import Resource

from core import arguments, conditional
from core.errors import ApiError, conflict, not_found
from core.permissions import current_user_id, current_user_is_admin, require_owner
from db import db
from models import commit_or_raise
from models.store import StoreModel, store_json
from models.user import UserModel
from webhooks import outbox

STORE_NOT_FOUND = "Store not found."

list_parser = arguments.list_parser(StoreModel.SORTS)
list_parser.add_argument("owner_id", type=arguments.query_int(1, arguments.MAX_ID), location="args", help="{error_msg}")


def embedded_items():
    return current_app.config["STORE_ITEMS_EMBEDDED"]


def check_store_quota(user_id):
    """403 quota_exceeded when the user already owns MAX_STORES_PER_USER stores.
    The user's row lock makes count-then-insert safe against concurrent creates."""
    UserModel.lock(user_id)
    limit = current_app.config["MAX_STORES_PER_USER"]
    if StoreModel.count_owned_by(user_id) >= limit:
        raise ApiError(403, "quota_exceeded", f"A user may own at most {limit} stores.")


def check_store_write(name):
    """A conditional write locks the store's row, then checks its current body."""
    if conditional.has_write_preconditions():
        StoreModel.lock(StoreModel.name == name)
        conditional.check_write(StoreModel.json_by_name(name, embedded_items()))


class Store(Resource):
    def get(self, name):
        store = StoreModel.json_by_name(arguments.path_name(name), embedded_items())
        if store is None:
            raise not_found(STORE_NOT_FOUND)
        return conditional.tagged(store)

    @jwt_required()
    def post(self, name):
        name = arguments.path_name(name)
        check_store_write(name)
        name_taken = conflict(f"A store with name '{name}' already exists.")
        if StoreModel.find_by_name(name):
            raise name_taken
        owner_id = current_user_id()
        if not current_user_is_admin():
            check_store_quota(owner_id)
        store = StoreModel(name=name, owner_id=owner_id)
        db.session.add(store)
        outbox.record("store.created", lambda: store_json(store, [], 0))
        commit_or_raise(name_taken)
        return conditional.tagged(store_json(store, [], 0), 201)

    @jwt_required()
    def delete(self, name):
        name = arguments.path_name(name)
        store = StoreModel.find_by_name(name)
        if store is None:
            conditional.check_write(None)  # If-Match on nothing: 412, not 404
            raise not_found(STORE_NOT_FOUND)
        require_owner(store.owner_id)
        check_store_write(name)
        holds_items = conflict("The store still holds items; delete them first.")
        if store.has_items():
            raise holds_items
        if not StoreModel.delete_by_id(store.id):
            # A concurrent request deleted it first: its answer and its event stand.
            db.session.rollback()
            raise not_found(STORE_NOT_FOUND)
        outbox.record("store.deleted", store_json(store, [], 0))
        # An item added meanwhile makes the foreign key refuse the delete.
        commit_or_raise(holds_items)
        return {"message": "Store deleted."}, 200


class StoreList(Resource):
    def get(self):
        args = list_parser.parse_args()
        page, per_page = args["page"], args["per_page"]
        where = StoreModel.filters(args["q"], args["owner_id"])
        order_by = StoreModel.ordering(args["sort"], filtered_by_name=args["q"] is not None)
        stores, total = StoreModel.page(page, per_page, embedded_items(), where, order_by)
        return arguments.paged("stores", stores, page, per_page, total)
