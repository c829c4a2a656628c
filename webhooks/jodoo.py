"""POST /hooks/jodoo: data pushes from the Jodoo form platform, applied once.

Checks, in order:
1. JODOO_WEBHOOK_SECRET unset: 404, as if the route did not exist.
2. X-JDY-Signature must equal the hex SHA-1 of
   "<nonce>:<raw body>:<secret>:<timestamp>" (compared in constant time),
   and `timestamp` be within 5 minutes of now: else 401 invalid_signature.
3. The body maps, through JODOO_FIELD_MAP, to an item name, a price and a
   store name passing the API's own rules: else 400 validation_error.
4. X-JDY-DeliverId is inserted into `jodoo_deliveries` in the same transaction
   as the effect: a second copy of the push (a retry, or a concurrent copy on
   another worker) fails on the primary key and answers 200 with no effect.

Ops: data_create / data_update upsert the item into the named store (made,
with no owner, if missing); data_remove deletes the item; any other op 200.
Every change records its webhook event like the API's own routes do.
"""

import hashlib
import hmac
import json
import time

from flask import current_app, request
from flask_restful import Resource
from sqlalchemy.exc import IntegrityError

from core import arguments
from core.errors import ApiError, conflict, validation_error
from db import db
from images import bookkeeping
from models.item import ItemModel
from models.jodoo_delivery import JodooDeliveryModel
from models.store import StoreModel, store_json
from webhooks import outbox

MAX_CLOCK_SKEW_SECONDS = 300
UPSERT_OPS = ("data_create", "data_update")
HANDLED_OPS = UPSERT_OPS + ("data_remove",)


def invalid_signature():
    return ApiError(401, "invalid_signature", "The push's signature or timestamp is not valid.")


def expected_signature(nonce, body, secret, timestamp):
    return hashlib.sha1(b":".join([nonce.encode(), body, secret.encode(), timestamp.encode()])).hexdigest()


def verify_signature(secret):
    nonce = request.args.get("nonce", "")
    timestamp = request.args.get("timestamp", "")
    given = request.headers.get("X-JDY-Signature", "")
    expected = expected_signature(nonce, request.get_data(cache=True), secret, timestamp)
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise invalid_signature()
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise invalid_signature()


def field_map():
    mapping = current_app.config["JODOO_FIELD_MAP"]
    return json.loads(mapping) if isinstance(mapping, str) else mapping


def parse_push():
    """The op and the push's data object, or 400 (415 for a body that is not JSON)."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the push as application/json.")
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("op"), str):
        raise validation_error({"op": "Must be a string."})
    data = body.get("data")
    if body["op"] in HANDLED_OPS and not isinstance(data, dict):
        raise validation_error({"data": "Must be an object."})
    return body["op"], data


def mapped(data, op):
    """name, price and store from the push's fields, checked by the API's rules."""
    names = field_map()
    # The same rules as names in the API's paths (trimmed, NFC, nothing invisible).
    wanted = {"name": arguments.item_name_value}
    if op in UPSERT_OPS:
        wanted.update(price=arguments.price, store=arguments.name)
    values, errors = {}, {}
    for key, parse in wanted.items():
        raw = data.get(names.get(key, key))
        try:
            if raw is None:
                raise ValueError("Missing.")
            values[key] = parse(raw)
        except ValueError as e:
            errors[names.get(key, key)] = str(e)
    if errors:
        raise validation_error(errors)
    return values


def store_named(name):
    store = StoreModel.find_by_name(name)
    if store is None:
        # Pushed data has no user behind it: the store has no owner.
        store = StoreModel(name=name)
        db.session.add(store)
        db.session.flush()
        outbox.record("store.created", store_json(store, [], 0))
    return store


def upsert_item(values):
    store = store_named(values["store"])
    item = ItemModel.find_by_name(values["name"])
    if item is None:
        item = ItemModel(name=values["name"], price=values["price"], store_id=store.id)
        db.session.add(item)
        outbox.record("item.created", item)
    else:
        item.price, item.store_id = values["price"], store.id
        db.session.flush()
        outbox.record("item.updated", item.json())


def remove_item(values):
    """Delete the item (uncommitted); its image key, for removal after the commit."""
    item = ItemModel.find_by_name(values["name"])
    if item is None:
        return None
    db.session.delete(item)
    outbox.record("item.deleted", item.json())
    return item.image_key


def already_applied(deliver_id):
    """Claim the delivery id in this transaction; True when another copy of the
    push already claimed it (the primary key refuses a second row)."""
    db.session.add(JodooDeliveryModel(deliver_id=deliver_id))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return True
    return False


class JodooHook(Resource):
    def post(self):
        secret = current_app.config.get("JODOO_WEBHOOK_SECRET")
        if not secret:
            raise ApiError(404, "not_found", "The requested URL was not found.")
        verify_signature(secret)
        op, data = parse_push()
        if op not in HANDLED_OPS:
            return {"message": f"Op '{op}' is not handled; ignored."}, 200
        values = mapped(data, op)
        deliver_id = request.headers.get("X-JDY-DeliverId", "")[:128]
        if deliver_id and already_applied(deliver_id):
            return {"message": "Already applied."}, 200
        image_key = None
        try:
            if op in UPSERT_OPS:
                upsert_item(values)
            else:
                image_key = remove_item(values)
            db.session.commit()
        except IntegrityError:
            # A concurrent change took the store or item name meanwhile; the
            # delivery id is rolled back too, so Jodoo's retry applies the push.
            db.session.rollback()
            raise conflict("The data changed concurrently; try again.") from None
        bookkeeping.discard(image_key)  # after the commit, as DELETE /item does
        return {"message": "Applied."}, 200
