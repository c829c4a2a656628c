"""Webhooks of an in-process app: subscribe one through the admin API, and read
the outbox (`webhook_deliveries`) the changes filled."""

import json

from sqlalchemy import select

from db import db
from models.webhook_delivery import WebhookDeliveryModel

ALL_EVENTS = ["item.created", "item.updated", "item.deleted", "store.created", "store.deleted"]


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
