"""The outbox (webhooks/outbox.py): the rows in `webhook_deliveries` that each
change records, in the same transaction as the change, for the subscribed
webhooks only.

Sending is not tested here (tests/live/test_webhook_worker.py runs the real
worker against a real receiver): these tests check what lands in the outbox.
"""

import pytest
from flask_jwt_extended import verify_jwt_in_request

from db import db
from models.item import ItemModel
from models.store import StoreModel
from tests.support.webhooks import outbox, subscribe
from webhooks.outbox import record


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
