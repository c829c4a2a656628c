"""POST /hooks/jodoo: data pushes from the Jodoo form platform, applied once,
as the account JODOO_ACTING_USER names.

Checks, in order:
1. JODOO_WEBHOOK_SECRET unset, or JODOO_ACTING_USER unset or naming no user:
   404, as if the route did not exist.
2. X-JDY-Signature must equal the hex SHA-1 of
   "<nonce>:<raw body>:<secret>:<timestamp>" (compared in constant time),
   and `timestamp` be within 5 minutes of now: else 401 invalid_signature.
3. The body maps, through JODOO_FIELD_MAP, to an item name, a price and a
   store name passing the API's own rules: else 400 validation_error.
4. The signed push (its nonce, timestamp and signature) is inserted into
   `jodoo_nonces`, and its X-JDY-DeliverId into `jodoo_deliveries`, in the
   same transaction as the effect: another copy of the push (a retry, a
   replay under another delivery id or none, or a concurrent copy on another
   worker) fails on a primary key and answers 200 with no effect.
5. The push acts with the acting account's rights, by the API's own checks:
   it may change only items in stores that account owns and create stores
   only within its quota, items only within the store's (admins: anything,
   no quotas). Else 403 forbidden or quota_exceeded: nothing changes, and
   the refusal is logged and kept on the delivery's row.

Ops: data_create / data_update upsert the item into the named store (made,
owned by the acting account, if missing); data_remove deletes the item; any
other op 200. Every change records its webhook event like the API's own
routes do.
"""

import hashlib
import hmac
import json
import time

from flask import current_app, request
from flask_restful import Resource
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from core import arguments
from core.clock import utcnow
from core.errors import ApiError, conflict, validation_error
from core.permissions import require_owner_as
from db import db
from images import bookkeeping
from models.item import ItemModel, item_json
from models.jodoo_delivery import APPLIED, REFUSED, JodooDeliveryModel
from models.jodoo_nonce import MAX_CLOCK_SKEW_SECONDS, JodooNonceModel, nonce_key
from models.store import StoreModel, store_json
from models.user import UserModel
from resources.item import check_item_quota
from resources.store import check_store_quota
from webhooks import outbox

UPSERT_OPS = ("data_create", "data_update")
HANDLED_OPS = UPSERT_OPS + ("data_remove",)


def route_not_found():
    return ApiError(404, "not_found", "The requested URL was not found.")


def changed_concurrently():
    return conflict("The data changed concurrently; try again.")


def invalid_signature():
    return ApiError(401, "invalid_signature", "The push's signature or timestamp is not valid.")


def expected_signature(nonce, body, secret, timestamp):
    return hashlib.sha1(b":".join([nonce.encode(), body, secret.encode(), timestamp.encode()])).hexdigest()


def verify_signature(secret):
    """401 unless signed with `secret` and fresh; the key of the signed push."""
    nonce = request.args.get("nonce", "")
    timestamp = request.args.get("timestamp", "")
    given = request.headers.get("X-JDY-Signature", "")
    expected = expected_signature(nonce, request.get_data(cache=True), secret, timestamp)
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise invalid_signature()
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise invalid_signature()
    return nonce_key(nonce, timestamp, given)


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


def acting_user():
    """(id, is_admin) of JODOO_ACTING_USER, or 404 while it names no user: a
    push is untrusted end-user data, so it never acts with more than the
    rights of the account it is configured to act as."""
    username = current_app.config.get("JODOO_ACTING_USER")
    user = UserModel.find_by_username(username) if username else None
    if user is None:
        raise route_not_found()
    return user.id, user.is_admin


def store_named(name, user_id, is_admin):
    """The named store, once the acting account may put items in it; made
    (owned by that account, within its store quota) when missing."""
    store = StoreModel.find_by_name(name)
    if store is not None:
        require_owner_as(user_id, is_admin, store.owner_id)
        return store
    if not is_admin:
        check_store_quota(user_id)
    store = StoreModel(name=name, owner_id=user_id)
    db.session.add(store)
    db.session.flush()
    outbox.record("store.created", store_json(store, [], 0))
    return store


def upsert_item(values, user_id, is_admin):
    store = store_named(values["store"], user_id, is_admin)
    placement = StoreModel.item_with_owner(values["name"])
    if placement is None:
        check_item_quota(store.id, is_admin)
        item = ItemModel(name=values["name"], price=values["price"], store_id=store.id)
        db.session.add(item)
        outbox.record("item.created", item)
        return
    require_owner_as(user_id, is_admin, placement.owner_id)  # of the store it is in now
    if placement.store_id != store.id:
        check_item_quota(store.id, is_admin)
    # Only where it was checked: moved or deleted meanwhile, it is a conflict.
    updated = db.session.execute(
        update(ItemModel)
        .where(ItemModel.id == placement.id, ItemModel.store_id == placement.store_id)
        .values(price=values["price"], store_id=store.id)
    ).rowcount
    if updated != 1:
        raise changed_concurrently()
    outbox.record("item.updated", {**item_json(placement), "price": float(values["price"]), "store_id": store.id})


def remove_item(values, user_id, is_admin):
    """Delete the item (uncommitted); its image key, for removal after the commit."""
    placement = StoreModel.item_with_owner(values["name"])
    if placement is None:
        return None
    require_owner_as(user_id, is_admin, placement.owner_id)
    if not ItemModel.delete_by_id(placement.id):
        return None  # deleted meanwhile: that change's event stands
    outbox.record("item.deleted", item_json(placement))
    return placement.image_key


def already_applied(signed_key, deliver_id):
    """Claim the signed push, and its delivery id, in this transaction; True
    when another copy of the push already claimed either (a primary key
    refuses a second row, also when the two copies race on two workers: the
    second insert waits for the first transaction and fails if it commits).
    A refused delivery changed nothing, so its row is taken over."""
    try:
        db.session.add(JodooNonceModel(key=signed_key))
        db.session.flush()
        if deliver_id and not took_over_refused(deliver_id):
            db.session.add(JodooDeliveryModel(deliver_id=deliver_id))
            db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return True
    return False


def took_over_refused(deliver_id):
    taken = update(JodooDeliveryModel).where(
        JodooDeliveryModel.deliver_id == deliver_id, JodooDeliveryModel.status == REFUSED
    )
    return db.session.execute(taken.values(status=APPLIED, reason=None, applied_at=utcnow())).rowcount == 1


def record_refusal(deliver_id, error):
    """Log why a push was refused, and keep it on its delivery's row (once the
    push's own transaction is rolled back: the refusal changed nothing)."""
    reason = f"{error.error}: {error.message}"[:200]
    current_app.logger.warning("Jodoo push %r refused: %s", deliver_id or None, reason)
    if not deliver_id:
        return
    values = {"status": REFUSED, "reason": reason, "applied_at": utcnow()}
    refused = update(JodooDeliveryModel).where(
        JodooDeliveryModel.deliver_id == deliver_id, JodooDeliveryModel.status == REFUSED
    )
    if db.session.execute(refused.values(**values)).rowcount == 0:
        db.session.add(JodooDeliveryModel(deliver_id=deliver_id, **values))
    try:
        db.session.commit()
    except IntegrityError:
        # Another copy of the push was applied meanwhile: its row stands.
        db.session.rollback()


class JodooHook(Resource):
    def post(self):
        secret = current_app.config.get("JODOO_WEBHOOK_SECRET")
        if not secret:
            raise route_not_found()
        user_id, is_admin = acting_user()
        signed_key = verify_signature(secret)
        op, data = parse_push()
        if op not in HANDLED_OPS:
            return {"message": f"Op '{op}' is not handled; ignored."}, 200
        values = mapped(data, op)
        deliver_id = request.headers.get("X-JDY-DeliverId", "")[:128]
        if already_applied(signed_key, deliver_id):
            return {"message": "Already applied."}, 200
        image_key = None
        try:
            if op in UPSERT_OPS:
                upsert_item(values, user_id, is_admin)
            else:
                image_key = remove_item(values, user_id, is_admin)
            db.session.commit()
        except ApiError as e:
            # The claims are rolled back with the effect, so a retry is judged afresh.
            db.session.rollback()
            if e.status == 403:
                record_refusal(deliver_id, e)
            raise
        except IntegrityError:
            # A concurrent change took the store or item name meanwhile; the
            # claims are rolled back too, so Jodoo's retry applies the push.
            db.session.rollback()
            raise changed_concurrently() from None
        bookkeeping.discard(image_key)  # after the commit, as DELETE /item does
        return {"message": "Applied."}, 200
