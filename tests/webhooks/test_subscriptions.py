"""The webhook admin endpoints (webhooks/subscriptions.py): subscribing, listing,
deleting, and a delivery's history and retry.

What a change records in the outbox is tests/webhooks/test_outbox.py's subject;
sending, tests/webhooks/test_sender.py's and tests/live/test_webhook_worker.py's
(the real worker against a real receiver).
"""

import pytest

from db import db
from models.webhook_delivery import WebhookDeliveryModel
from tests.support.webhooks import outbox, subscribe


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
