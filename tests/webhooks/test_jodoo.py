"""POST /hooks/jodoo: signature, freshness, mapping, the acting account's
rights, once-only application.

The push is signed here exactly as Jodoo signs it: hex SHA-1 of
"<nonce>:<raw body>:<secret>:<timestamp>". Each push gets a fresh nonce
unless a test replays one. Concurrent copies are also sent to the real
server (two uWSGI workers) in tests/live/test_webhook_mule.py.
"""

import hashlib
import json
import threading
import time
import uuid

import pytest
import sqlalchemy
from sqlalchemy import insert, select

from config import database_url as sqlalchemy_url
from core.clock import utcnow
from db import db
from models.item import ItemModel
from models.jodoo_delivery import JodooDeliveryModel
from models.jodoo_nonce import JodooNonceModel, nonce_key
from models.store import StoreModel
from models.user import UserModel
from models.webhook_delivery import WebhookDeliveryModel

SECRET = "jodoo-test-secret"
ACTING_USER = "jodoo"


@pytest.fixture
def app(make_app):
    return make_app(JODOO_WEBHOOK_SECRET=SECRET, JODOO_ACTING_USER=ACTING_USER)


@pytest.fixture(autouse=True)
def jodoo(users):
    """The account pushes act as."""
    return users.create(ACTING_USER)


def sign(body, nonce=None, timestamp=None, secret=SECRET):
    nonce = uuid.uuid4().hex if nonce is None else nonce
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hashlib.sha1(f"{nonce}:{body}:{secret}:{timestamp}".encode()).hexdigest()
    return f"/hooks/jodoo?nonce={nonce}&timestamp={timestamp}", signature


def send(client, url, body, signature, deliver_id):
    headers = {"X-JDY-Signature": signature}
    if deliver_id is not None:
        headers["X-JDY-DeliverId"] = deliver_id
    return client.post(url, data=body, content_type="application/json", headers=headers)


def push(client, op, data, deliver_id="d-1", **signing):
    body = json.dumps({"op": op, "data": data})
    url, signature = sign(body, **signing)
    return send(client, url, body, signature, deliver_id)


def items(app):
    with app.app_context():
        rows = db.session.execute(
            select(ItemModel.name, ItemModel.price, StoreModel.name, StoreModel.id).join(StoreModel)
        ).all()
        db.session.remove()
        return [tuple(row) for row in rows]


def test_right_signature_creates_the_item_and_its_store(app, client):
    response = push(client, "data_create", {"name": "chair", "price": 12.5, "store": "Jodoo shop"})
    assert response.status_code == 200, response.get_json()
    assert items(app) == [("chair", 12.5, "Jodoo shop", 1)]


def test_update_upserts_and_remove_deletes(app, client):
    assert push(client, "data_update", {"name": "chair", "price": 1, "store": "a"}, "d-1").status_code == 200
    assert push(client, "data_update", {"name": "chair", "price": 2, "store": "b"}, "d-2").status_code == 200
    assert [(n, p, s) for n, p, s, _ in items(app)] == [("chair", 2.0, "b")]
    assert push(client, "data_remove", {"name": "chair"}, "d-3").status_code == 200
    assert items(app) == []
    assert push(client, "data_remove", {"name": "chair"}, "d-4").status_code == 200  # already gone


def test_field_map_names_the_jodoo_fields(make_app):
    app = make_app(
        JODOO_WEBHOOK_SECRET=SECRET,
        JODOO_ACTING_USER=ACTING_USER,
        JODOO_FIELD_MAP='{"name": "_widget_1", "price": "_widget_2", "store": "_widget_3"}',
    )
    client = app.test_client()
    response = push(client, "data_create", {"_widget_1": "lamp", "_widget_2": 3, "_widget_3": "s"})
    assert response.status_code == 200
    assert items(app)[0][:3] == ("lamp", 3.0, "s")


@pytest.mark.parametrize("change", ["wrong", "missing", "stale", "future", "tampered", "other-secret"])
def test_bad_signatures_are_401(app, client, change):
    body = json.dumps({"op": "data_create", "data": {"name": "chair", "price": 1, "store": "s"}})
    timestamp = {"stale": time.time() - 301, "future": time.time() + 301}.get(change)
    url, signature = sign(body, timestamp=timestamp, secret="nope" if change == "other-secret" else SECRET)
    headers = {"X-JDY-Signature": "0" * 40 if change == "wrong" else signature, "X-JDY-DeliverId": "d"}
    if change == "missing":
        del headers["X-JDY-Signature"]
    if change == "tampered":
        body = body.replace('"price": 1', '"price": 0')
    response = client.post(url, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_signature"
    assert items(app) == []


def test_same_deliver_id_twice_has_one_effect(app, client):
    data = {"name": "chair", "price": 1, "store": "s"}
    assert push(client, "data_create", data, "same").status_code == 200
    assert push(client, "data_remove", {"name": "chair"}, "other").status_code == 200
    second = push(client, "data_create", data, "same")
    assert second.status_code == 200 and second.get_json()["message"] == "Already applied."
    assert items(app) == []


@pytest.mark.parametrize(
    "data, field",
    [
        ({"price": 1, "store": "s"}, "name"),
        ({"name": "", "price": 1, "store": "s"}, "name"),
        ({"name": "x" * 81, "price": 1, "store": "s"}, "name"),
        ({"name": "chair", "price": "12", "store": "s"}, "price"),
        ({"name": "chair", "price": 1.234, "store": "s"}, "price"),
        ({"name": "chair", "price": -1, "store": "s"}, "price"),
        ({"name": "chair", "price": 1}, "store"),
        ({"name": 123, "price": 1, "store": "s"}, "name"),  # form platforms send numbers
        ({"name": ["a"], "price": 1, "store": "s"}, "name"),
        ({"name": "chair", "price": 1, "store": 42}, "store"),
        ({"name": "chair\u200b", "price": 1, "store": "s"}, "name"),
        ({"name": "chair/image", "price": 1, "store": "s"}, "name"),
    ],
)
def test_unmappable_data_is_400(app, client, data, field):
    response = push(client, "data_create", data)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "validation_error" and field in body["errors"]
    assert items(app) == []
    # Not applied, so the same push may come again once fixed.
    assert push(client, "data_create", {"name": "chair", "price": 1, "store": "s"}).status_code == 200


def test_unhandled_op_is_200_and_not_json_is_400(app, client):
    assert push(client, "form_update", {"anything": 1}).status_code == 200
    url, signature = sign("not json")
    response = client.post(
        url, data="not json", content_type="application/json", headers={"X-JDY-Signature": signature}
    )
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"
    response = client.post(url, data="not json", content_type="text/plain", headers={"X-JDY-Signature": signature})
    assert response.status_code == 415


def test_secret_unset_is_404(make_app):
    client = make_app(JODOO_ACTING_USER=ACTING_USER).test_client()
    response = push(client, "data_create", {"name": "chair", "price": 1, "store": "s"})
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


@pytest.mark.parametrize("acting_user", [None, "", "nobody"])
def test_acting_user_unset_or_unknown_is_404(app, make_app, acting_user):
    client = make_app(JODOO_WEBHOOK_SECRET=SECRET, JODOO_ACTING_USER=acting_user).test_client()
    response = push(client, "data_create", {"name": "chair", "price": 1, "store": "s"})
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"
    assert items(app) == []


def test_pushed_changes_emit_webhook_events(app, client, users, jodoo):
    admin = users.create("admin", admin=True)
    client.post(
        "/webhooks",
        headers=admin["headers"],
        json={
            "url": "http://127.0.0.1:9/h",
            "events": ["item.created", "item.updated", "item.deleted", "store.created"],
        },
    )
    push(client, "data_create", {"name": "chair", "price": 1, "store": "s"}, "1")
    push(client, "data_update", {"name": "chair", "price": 2, "store": "s"}, "2")
    push(client, "data_remove", {"name": "chair"}, "3")
    with app.app_context():
        rows = db.session.execute(
            select(WebhookDeliveryModel.event, WebhookDeliveryModel.payload).order_by(WebhookDeliveryModel.id)
        ).all()
        db.session.remove()
    assert [(event, json.loads(payload)["data"]) for event, payload in rows] == [
        ("store.created", {"id": 1, "name": "s", "owner_id": jodoo["id"], "items": [], "items_total": 0}),
        ("item.created", {"id": 1, "name": "chair", "price": 1.0, "store_id": 1, "image_url": None}),
        ("item.updated", {"id": 1, "name": "chair", "price": 2.0, "store_id": 1, "image_url": None}),
        ("item.deleted", {"id": 1, "name": "chair", "price": 2.0, "store_id": 1, "image_url": None}),
    ]


@pytest.mark.parametrize("offset", [301, -301])
def test_whole_second_timestamps_outside_five_minutes_are_401(app, client, offset):
    response = push(
        client, "data_create", {"name": "chair", "price": 1, "store": "s"}, timestamp=int(time.time()) + offset
    )
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_signature"
    assert items(app) == []


def deliveries(app):
    with app.app_context():
        rows = db.session.execute(
            select(JodooDeliveryModel.deliver_id, JodooDeliveryModel.status, JodooDeliveryModel.reason)
        ).all()
        db.session.remove()
        return {deliver_id: (status, reason) for deliver_id, status, reason in rows}


def test_delivery_id_is_kept_only_with_the_effect(make_app, jodoo):
    """A push whose effect fails after its delivery id was claimed (here: the
    store is full) leaves the id free: the retry applies once it may."""
    app = make_app(JODOO_WEBHOOK_SECRET=SECRET, JODOO_ACTING_USER=ACTING_USER, MAX_ITEMS_PER_STORE=1)
    client = app.test_client()
    assert push(client, "data_create", {"name": "table", "price": 1, "store": "s"}, "d-0").status_code == 200
    refused = push(client, "data_create", {"name": "chair", "price": 2, "store": "s"}, "d-1")
    assert refused.status_code == 403 and refused.get_json()["error"] == "quota_exceeded"
    status, reason = deliveries(app)["d-1"]
    assert status == "refused" and reason.startswith("quota_exceeded")
    assert push(client, "data_remove", {"name": "table"}, "d-2").status_code == 200
    retry = push(client, "data_create", {"name": "chair", "price": 2, "store": "s"}, "d-1")
    assert retry.status_code == 200 and retry.get_json()["message"] == "Applied."
    assert [row[:3] for row in items(app)] == [("chair", 2.0, "s")]
    assert deliveries(app)["d-1"] == ("applied", None)


def test_replayed_signed_push_has_no_second_effect(app, client, jodoo):
    body = json.dumps({"op": "data_create", "data": {"name": "chair", "price": 1, "store": "s"}})
    url, signature = sign(body)
    assert send(client, url, body, signature, "d-1").status_code == 200
    # The owner changes the item afterwards; a replay must not undo that.
    store_id = items(app)[0][3]
    changed = client.put("/item/chair", headers=jodoo["headers"], json={"price": 5, "store_id": store_id})
    assert changed.status_code == 200
    for deliver_id in ("d-2", None):
        replay = send(client, url, body, signature, deliver_id)
        assert replay.status_code == 200 and replay.get_json()["message"] == "Already applied."
        assert items(app) == [("chair", 5.0, "s", store_id)]
    assert set(deliveries(app)) == {"d-1"}


def test_copy_whose_claim_another_worker_committed_has_no_effect(app, client):
    """Two copies racing on two workers: the other worker's transaction has
    inserted (and committed) the push's claim after this one could have
    looked for it; only the primary key stands between them."""
    body = json.dumps({"op": "data_create", "data": {"name": "chair", "price": 1, "store": "s"}})
    url, signature = sign(body)
    nonce, timestamp = url.split("nonce=")[1].split("&timestamp=")
    with app.app_context():
        db.session.add(JodooNonceModel(key=nonce_key(nonce, timestamp, signature)))
        db.session.commit()
        db.session.remove()
    response = send(client, url, body, signature, "d-other-worker")
    assert response.status_code == 200 and response.get_json()["message"] == "Already applied."
    assert items(app) == []
    assert deliveries(app) == {}


def test_copy_racing_another_workers_open_transaction_has_no_effect(app, client, database_url):
    """The other worker has inserted the push's claim but not committed yet:
    this copy's insert waits for that transaction, then fails on the key."""
    body = json.dumps({"op": "data_create", "data": {"name": "chair", "price": 1, "store": "s"}})
    url, signature = sign(body)
    nonce, timestamp = url.split("nonce=")[1].split("&timestamp=")
    engine = sqlalchemy.create_engine(sqlalchemy_url(database_url))
    answers = []
    try:
        with engine.connect() as other_worker:
            claim = other_worker.begin()
            other_worker.execute(
                insert(JodooNonceModel.__table__).values(key=nonce_key(nonce, timestamp, signature), seen_at=utcnow())
            )
            copy = threading.Thread(target=lambda: answers.append(send(client, url, body, signature, "d-2")))
            copy.start()
            copy.join(0.5)
            claim.commit()
            copy.join(10)
    finally:
        engine.dispose()
    assert answers[0].status_code == 200, answers[0].get_json()
    assert answers[0].get_json()["message"] == "Already applied."
    assert items(app) == []


def test_copy_whose_delivery_id_another_worker_committed_has_no_effect(app, client):
    with app.app_context():
        db.session.add(JodooDeliveryModel(deliver_id="d-1"))
        db.session.commit()
        db.session.remove()
    response = push(client, "data_create", {"name": "chair", "price": 1, "store": "s"}, "d-1")
    assert response.status_code == 200 and response.get_json()["message"] == "Already applied."
    assert items(app) == []


def stores(app):
    with app.app_context():
        rows = db.session.execute(select(StoreModel.name, StoreModel.owner_id).order_by(StoreModel.id)).all()
        db.session.remove()
        return [tuple(row) for row in rows]


def test_push_acts_as_the_acting_user(app, client, jodoo):
    assert push(client, "data_create", {"name": "chair", "price": 1, "store": "mine"}).status_code == 200
    assert stores(app) == [("mine", jodoo["id"])]


def test_push_into_another_users_store_is_403(app, client, jodoo, owner, store):
    created = client.post("/item/lamp", headers=owner["headers"], json={"price": 3, "store_id": store["id"]})
    assert created.status_code == 201
    assert push(client, "data_create", {"name": "mine", "price": 1, "store": "mine"}, "d-0").status_code == 200
    before = items(app)
    for deliver_id, op, data in [
        ("d-1", "data_create", {"name": "chair", "price": 1, "store": "shop"}),  # into their store
        ("d-2", "data_update", {"name": "lamp", "price": 9, "store": "shop"}),  # their item, in place
        ("d-3", "data_update", {"name": "lamp", "price": 3, "store": "mine"}),  # their item, moved out
        ("d-4", "data_update", {"name": "mine", "price": 1, "store": "shop"}),  # own item, moved in
        ("d-5", "data_remove", {"name": "lamp"}),  # their item, deleted
    ]:
        response = push(client, op, data, deliver_id)
        assert response.status_code == 403, (deliver_id, response.get_json())
        assert response.get_json()["error"] == "forbidden"
        assert items(app) == before
        assert deliveries(app)[deliver_id][0] == "refused"
    assert stores(app) == [("shop", owner["id"]), ("mine", jodoo["id"])]


def test_push_into_an_ownerless_store_is_403(app, client):
    with app.app_context():
        db.session.add(StoreModel(name="orphan"))
        db.session.commit()
        db.session.remove()
    response = push(client, "data_create", {"name": "chair", "price": 1, "store": "orphan"})
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert items(app) == [] and stores(app) == [("orphan", None)]


@pytest.mark.parametrize("admin", [False, True])
def test_acting_users_store_quota_applies_unless_admin(make_app, jodoo, admin):
    app = make_app(JODOO_WEBHOOK_SECRET=SECRET, JODOO_ACTING_USER=ACTING_USER, MAX_STORES_PER_USER=1)
    client = app.test_client()
    if admin:
        with app.app_context():
            db.session.get(UserModel, jodoo["id"]).is_admin = True
            db.session.commit()
            db.session.remove()
    assert push(client, "data_create", {"name": "chair", "price": 1, "store": "a"}, "d-1").status_code == 200
    response = push(client, "data_create", {"name": "lamp", "price": 1, "store": "b"}, "d-2")
    if admin:
        assert response.status_code == 200
        assert [name for name, _ in stores(app)] == ["a", "b"]
    else:
        assert response.status_code == 403 and response.get_json()["error"] == "quota_exceeded"
        assert stores(app) == [("a", jodoo["id"])] and [row[0] for row in items(app)] == ["chair"]
        assert deliveries(app)["d-2"][0] == "refused"


def test_admin_acting_user_is_exempt_from_item_quota(make_app, jodoo):
    app = make_app(JODOO_WEBHOOK_SECRET=SECRET, JODOO_ACTING_USER=ACTING_USER, MAX_ITEMS_PER_STORE=1)
    client = app.test_client()
    with app.app_context():
        db.session.get(UserModel, jodoo["id"]).is_admin = True
        db.session.commit()
        db.session.remove()
    assert push(client, "data_create", {"name": "chair", "price": 1, "store": "a"}, "d-1").status_code == 200
    assert push(client, "data_create", {"name": "lamp", "price": 1, "store": "a"}, "d-2").status_code == 200
    assert len(items(app)) == 2
