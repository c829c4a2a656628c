"""The webhook admin endpoints and the outbox rows that changes record.

Sending is not tested here (tests/test_webhooks_delivery.py runs the real
worker against a real receiver): these tests check what the API answers and
what lands in `webhook_deliveries`, in the same transaction as each change.
"""

import json

import pytest
from flask_jwt_extended import verify_jwt_in_request
from sqlalchemy import select

from db import db
from models.item import ItemModel
from models.store import StoreModel
from models.webhook_delivery import WebhookDeliveryModel
from webhooks.outbox import record

ALL_EVENTS = ["item.created", "item.updated", "item.deleted", "store.created", "store.deleted"]


@pytest.fixture
def admin(users):
    return users.create("admin", admin=True)


def subscribe(client, admin, events=ALL_EVENTS, url="http://127.0.0.1:9/hook"):
    response = client.post("/webhooks", headers=admin["headers"], json={"url": url, "events": events})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def outbox(app):
    with app.app_context():
        rows = db.session.execute(select(WebhookDeliveryModel).order_by(WebhookDeliveryModel.id)).scalars()
        result = [(row.webhook_id, row.event, json.loads(row.payload), row.message_id) for row in rows]
        db.session.remove()
        return result


def test_create_shows_the_secret_once(client, admin):
    body = subscribe(client, admin, ["item.created", "store.deleted"])
    assert set(body) == {"id", "url", "events", "secret", "created_at"}
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["item.created", "store.deleted"]
    assert body["created_at"].endswith("Z")
    one = client.get(f"/webhooks/{body['id']}", headers=admin["headers"]).get_json()
    assert "secret" not in one and one["url"] == body["url"]
    listed = client.get("/webhooks", headers=admin["headers"]).get_json()
    assert listed["total"] == 1 and "secret" not in listed["webhooks"][0]
    assert listed["page"] == 1 and listed["per_page"] == 100


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://example.com/x", "events": ["item.created"]}, "url"),
        ({"url": "not a url", "events": ["item.created"]}, "url"),
        ({"url": "http://127.0.0.1/x", "events": []}, "events"),
        ({"url": "http://127.0.0.1/x", "events": ["item.exploded"]}, "events"),
        ({"url": "http://127.0.0.1/x", "events": "item.created"}, "events"),
        ({"events": ["item.created"]}, "url"),
    ],
)
def test_create_refuses_bad_fields(client, admin, body, field):
    response = client.post("/webhooks", headers=admin["headers"], json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"
    assert field in response.get_json()["errors"]


def test_admin_only(client, users):
    user = users.create("plain")
    for method, path in [
        ("post", "/webhooks"),
        ("get", "/webhooks"),
        ("get", "/webhooks/1"),
        ("delete", "/webhooks/1"),
        ("get", "/webhooks/1/deliveries"),
        ("post", "/webhooks/1/deliveries/1/retry"),
    ]:
        response = getattr(client, method)(path, headers=user["headers"], json={})
        assert response.status_code == 403, (method, path)
        assert response.get_json()["error"] == "admin_required"
        assert getattr(client, method)(path).status_code == 401


def test_unknown_ids_are_404(client, admin):
    for method, path in [
        ("get", "/webhooks/99"),
        ("delete", "/webhooks/99"),
        ("get", "/webhooks/99/deliveries"),
        ("post", "/webhooks/99/deliveries/1/retry"),
    ]:
        response = getattr(client, method)(path, headers=admin["headers"])
        assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_every_change_records_its_event_with_the_api_view(app, client, admin):
    hook = subscribe(client, admin)
    headers = admin["headers"]
    store = client.post("/store/shop", headers=headers).get_json()
    client.post("/item/chair", headers=headers, json={"price": 12.5, "store_id": store["id"]})
    client.put("/item/chair", headers=headers, json={"price": 13, "store_id": store["id"]})
    client.put("/item/table", headers=headers, json={"price": 1, "store_id": store["id"]})
    client.delete("/item/chair", headers=headers)
    client.delete("/item/table", headers=headers)
    client.delete("/store/shop", headers=headers)
    rows = outbox(app)
    assert [(r[1], r[2]["data"]) for r in rows] == [
        ("store.created", {"id": 1, "name": "shop", "owner_id": admin["id"], "items": [], "items_total": 0}),
        ("item.created", {"id": 1, "name": "chair", "price": 12.5, "store_id": 1, "image_url": None}),
        ("item.updated", {"id": 1, "name": "chair", "price": 13.0, "store_id": 1, "image_url": None}),
        ("item.created", {"id": 2, "name": "table", "price": 1.0, "store_id": 1, "image_url": None}),
        ("item.deleted", {"id": 1, "name": "chair", "price": 13.0, "store_id": 1, "image_url": None}),
        ("item.deleted", {"id": 2, "name": "table", "price": 1.0, "store_id": 1, "image_url": None}),
        ("store.deleted", {"id": 1, "name": "shop", "owner_id": admin["id"], "items": [], "items_total": 0}),
    ]
    assert all(r[0] == hook["id"] and r[2]["type"] == r[1] and r[2]["timestamp"].endswith("Z") for r in rows)
    assert len({r[3] for r in rows}) == len(rows)


def test_only_subscribed_types_and_endpoints(app, client, admin):
    first = subscribe(client, admin, ["item.created"])
    second = subscribe(client, admin, ["item.created", "item.deleted"])
    subscribe(client, admin, ["store.deleted"])
    store = client.post("/store/shop", headers=admin["headers"]).get_json()
    client.post("/item/chair", headers=admin["headers"], json={"price": 1, "store_id": store["id"]})
    client.delete("/item/chair", headers=admin["headers"])
    rows = outbox(app)
    assert sorted((r[0], r[1]) for r in rows) == [
        (first["id"], "item.created"),
        (second["id"], "item.created"),
        (second["id"], "item.deleted"),
    ]
    # One event, one webhook-id, whichever endpoint it goes to.
    created = [r[3] for r in rows if r[1] == "item.created"]
    assert created[0] == created[1]


def test_refused_changes_record_nothing(app, client, admin):
    subscribe(client, admin)
    headers = admin["headers"]
    store = client.post("/store/shop", headers=headers).get_json()
    client.post("/item/chair", headers=headers, json={"price": 1, "store_id": store["id"]})
    before = outbox(app)
    assert client.post("/store/shop", headers=headers).status_code == 409
    assert client.post("/item/chair", headers=headers, json={"price": 1, "store_id": store["id"]}).status_code == 409
    assert client.post("/item/x", headers=headers, json={"price": 1, "store_id": 99}).status_code == 400
    assert client.delete("/store/shop", headers=headers).status_code == 409  # still holds an item
    assert outbox(app) == before


def test_rolled_back_change_emits_nothing_and_committed_one_does(app, client, admin):
    subscribe(client, admin)
    with app.app_context():
        db.session.add(StoreModel(name="ghost"))
        record("store.created", {"id": 0, "name": "ghost", "items": []})
        db.session.rollback()
        db.session.commit()  # nothing left to write
        assert outbox(app) == []
        store = StoreModel(name="real")
        db.session.add(store)
        record("store.created", lambda: {"id": store.id, "name": store.name, "items": []})
        db.session.commit()
        db.session.remove()
    assert [r[2]["data"]["name"] for r in outbox(app)] == ["real"]


def test_constraint_race_inside_commit_records_nothing(app, client, admin):
    """The flush that writes the event happens inside commit(): a duplicate
    name raises there, and neither the item nor its event is written."""
    subscribe(client, admin)
    store = client.post("/store/shop", headers=admin["headers"]).get_json()
    client.post("/item/chair", headers=admin["headers"], json={"price": 1, "store_id": store["id"]})
    before = outbox(app)
    from core.errors import ApiError
    from resources.item import insert_item

    with app.test_request_context(headers=admin["headers"]):
        verify_jwt_in_request()
        with pytest.raises(ApiError) as refused:
            insert_item("chair", {"price": 2, "store_id": store["id"]})  # no look before: the insert itself races
        assert refused.value.status == 409
        db.session.remove()
    assert outbox(app) == before
    with app.app_context():
        assert ItemModel.query.count() == 1
        db.session.remove()


def test_deliveries_list_and_retry(app, client, admin):
    hook = subscribe(client, admin, ["store.created"])
    client.post("/store/shop", headers=admin["headers"])
    listed = client.get(f"/webhooks/{hook['id']}/deliveries", headers=admin["headers"]).get_json()
    assert listed["total"] == 1
    delivery = listed["deliveries"][0]
    assert set(delivery) == {
        "id",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    }
    assert delivery["status"] == "pending" and delivery["attempts"] == 0
    with app.app_context():
        db.session.get(WebhookDeliveryModel, delivery["id"]).status = "failed"
        db.session.commit()
        db.session.remove()
    response = client.post(f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/retry", headers=admin["headers"])
    assert response.status_code == 202 and response.get_json()["status"] == "pending"
    other = subscribe(client, admin)
    assert (
        client.post(f"/webhooks/{other['id']}/deliveries/{delivery['id']}/retry", headers=admin["headers"]).status_code
        == 404
    )


def test_delete_removes_the_webhook_and_its_deliveries(app, client, admin):
    hook = subscribe(client, admin)
    client.post("/store/shop", headers=admin["headers"])
    assert client.delete(f"/webhooks/{hook['id']}", headers=admin["headers"]).status_code == 200
    assert client.get(f"/webhooks/{hook['id']}", headers=admin["headers"]).status_code == 404
    assert outbox(app) == []
