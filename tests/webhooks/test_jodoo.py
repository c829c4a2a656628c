"""POST /hooks/jodoo: signature, freshness, mapping, once-only application.

The push is signed here exactly as Jodoo signs it: hex SHA-1 of
"<nonce>:<raw body>:<secret>:<timestamp>". The concurrent-copies test runs
against the real server (two uWSGI workers) in tests/live/test_webhook_mule.py.
"""

import hashlib
import json
import time

import pytest
from sqlalchemy import select

from db import db
from models.item import ItemModel
from models.store import StoreModel
from models.webhook_delivery import WebhookDeliveryModel

SECRET = "jodoo-test-secret"


@pytest.fixture
def app(make_app):
    return make_app(JODOO_WEBHOOK_SECRET=SECRET)


def sign(body, nonce="abc123", timestamp=None, secret=SECRET):
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hashlib.sha1(f"{nonce}:{body}:{secret}:{timestamp}".encode()).hexdigest()
    return f"/hooks/jodoo?nonce={nonce}&timestamp={timestamp}", signature


def push(client, op, data, deliver_id="d-1", **signing):
    body = json.dumps({"op": op, "data": data})
    url, signature = sign(body, **signing)
    return client.post(
        url,
        data=body,
        content_type="application/json",
        headers={"X-JDY-Signature": signature, "X-JDY-DeliverId": deliver_id},
    )


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
        JODOO_WEBHOOK_SECRET=SECRET, JODOO_FIELD_MAP='{"name": "_widget_1", "price": "_widget_2", "store": "_widget_3"}'
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
    client = make_app().test_client()
    response = push(client, "data_create", {"name": "chair", "price": 1, "store": "s"})
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_pushed_changes_emit_webhook_events(app, client, users):
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
        ("store.created", {"id": 1, "name": "s", "owner_id": None, "items": [], "items_total": 0}),
        ("item.created", {"id": 1, "name": "chair", "price": 1.0, "store_id": 1, "image_url": None}),
        ("item.updated", {"id": 1, "name": "chair", "price": 2.0, "store_id": 1, "image_url": None}),
        ("item.deleted", {"id": 1, "name": "chair", "price": 2.0, "store_id": 1, "image_url": None}),
    ]
