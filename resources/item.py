"""Items: one item by name (read, create, create-or-update, delete) and the paged list."""
from flask_jwt_extended import get_jwt, jwt_required
from flask_restful import Resource
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

import events
from db import db
from errors import conflict, not_found, validation_error
from models.item import ItemModel
from models.store import StoreModel
from resources import arguments
from security import admin_required, fresh_jwt_required

item_parser = arguments.body_parser()
item_parser.add_argument("price", type=arguments.price, required=True)
item_parser.add_argument("store_id", type=arguments.positive_int, required=True)



def no_such_store():
    return validation_error({"store_id": "No store has this id."})


def parse_item():
    data = item_parser.parse_args()
    if not StoreModel.exists(data["store_id"]):
        raise no_such_store()
    return data


ITEM_NOT_FOUND = "Item not found."


def name_taken(name):
    return conflict(f"An item with name '{name}' already exists.")


def insert_item(name, data):
    """Insert, letting the database's constraints decide races: None when the
    name was taken meanwhile; ApiError when the store vanished meanwhile."""
    item = ItemModel(name=name, price=data["price"], store_id=data["store_id"])
    db.session.add(item)
    events.record("item.created", item)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if ItemModel.find_by_name(name) is not None:
            return None
        raise no_such_store() from None
    return item


class Item(Resource):
    @jwt_required()
    def get(self, name):
        item = ItemModel.json_by_name(arguments.path_name(name))
        if item is None:
            raise not_found(ITEM_NOT_FOUND)
        return item, 200

    @fresh_jwt_required
    def post(self, name):
        name = arguments.path_name(name)
        data = parse_item()
        if ItemModel.find_by_name(name) is not None:
            raise name_taken(name)
        item = insert_item(name, data)
        if item is None:
            raise name_taken(name)
        return item.json(), 201

    @jwt_required()
    def put(self, name):
        name = arguments.path_name(name)
        data = parse_item()
        values = {"price": data["price"], "store_id": data["store_id"]}
        # Update first; if no row had the name, insert; if a concurrent PUT
        # inserted it meanwhile, the unique constraint says so and we update.
        for _ in range(2):
            updated = db.session.execute(
                update(ItemModel).where(ItemModel.name == name).values(**values)
            ).rowcount
            if updated:
                item = ItemModel.json_by_name(name)
                events.record("item.updated", item)
                db.session.commit()
                return item, 200
            item = insert_item(name, data)
            if item is not None:
                return item.json(), 201
        raise conflict("The item changed concurrently; try again.")

    @admin_required
    def delete(self, name):
        item = ItemModel.find_by_name(arguments.path_name(name))
        if item is None:
            raise not_found(ITEM_NOT_FOUND)
        db.session.delete(item)
        events.record("item.deleted", item.json())
        db.session.commit()
        return {"message": "Item deleted."}, 200


class ItemList(Resource):
    @jwt_required(optional=True)
    def get(self):
        page, per_page = arguments.paging()
        if get_jwt():
            items, total = ItemModel.page(page, per_page)
            return arguments.paged("items", items, page, per_page, total)
        names, total = ItemModel.page_of_names(page, per_page)
        return arguments.paged("items", names, page, per_page, total,
                               message="More data available if you log in.")
