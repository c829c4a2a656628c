"""Stores: one store by name, and the paged list of stores with their items."""
from flask_jwt_extended import jwt_required
from flask_restful import Resource
import events
from db import db
from errors import conflict, not_found
from models import commit_or_raise
from models.store import StoreModel
from resources import arguments
from security import admin_required


STORE_NOT_FOUND = "Store not found."


class Store(Resource):
    def get(self, name):
        store = StoreModel.json_by_name(arguments.path_name(name))
        if store is None:
            raise not_found(STORE_NOT_FOUND)
        return store, 200

    @jwt_required()
    def post(self, name):
        name = arguments.path_name(name)
        name_taken = conflict(f"A store with name '{name}' already exists.")
        if StoreModel.find_by_name(name):
            raise name_taken
        store = StoreModel(name=name)
        db.session.add(store)
        events.record("store.created", lambda: {"id": store.id, "name": store.name, "items": []})
        commit_or_raise(name_taken)
        return {"id": store.id, "name": store.name, "items": []}, 201

    @admin_required
    def delete(self, name):
        store = StoreModel.find_by_name(arguments.path_name(name))
        if store is None:
            raise not_found(STORE_NOT_FOUND)
        holds_items = conflict("The store still holds items; delete them first.")
        if store.has_items():
            raise holds_items
        db.session.delete(store)
        events.record("store.deleted", {"id": store.id, "name": store.name, "items": []})
        # An item added meanwhile makes the foreign key refuse the delete.
        commit_or_raise(holds_items)
        return {"message": "Store deleted."}, 200


class StoreList(Resource):
    def get(self):
        page, per_page = arguments.paging()
        stores, total = StoreModel.page(page, per_page)
        return arguments.paged("stores", stores, page, per_page, total)
