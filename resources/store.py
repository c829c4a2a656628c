"""Stores: one store by name, and the paged list of stores with their items."""
from flask_jwt_extended import jwt_required
from flask_restful import Resource
from sqlalchemy.exc import IntegrityError

from db import db
from errors import ApiError
from models.store import StoreModel
from resources import arguments
from security import admin_required


def find_store(name):
    store = StoreModel.find_by_name(arguments.path_name(name))
    if store is None:
        raise ApiError(404, "not_found", "Store not found.")
    return store


class Store(Resource):
    def get(self, name):
        store = StoreModel.json_by_name(arguments.path_name(name))
        if store is None:
            raise ApiError(404, "not_found", "Store not found.")
        return store, 200

    @jwt_required()
    def post(self, name):
        name = arguments.path_name(name)
        conflict = ApiError(409, "conflict", f"A store with name '{name}' already exists.")
        if StoreModel.find_by_name(name):
            raise conflict
        store = StoreModel(name=name)
        db.session.add(store)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            raise conflict from None
        return {"id": store.id, "name": store.name, "items": []}, 201

    @admin_required
    def delete(self, name):
        store = find_store(name)
        conflict = ApiError(409, "conflict", "The store still holds items; delete them first.")
        if store.has_items():
            raise conflict
        db.session.delete(store)
        try:
            db.session.commit()
        except IntegrityError:
            # An item was added meanwhile; the foreign key refused the delete.
            db.session.rollback()
            raise conflict from None
        return {"message": "Store deleted."}, 200


class StoreList(Resource):
    def get(self):
        page, per_page = arguments.paging()
        stores, total = StoreModel.page(page, per_page)
        return arguments.paged("stores", stores, page, per_page, total)
