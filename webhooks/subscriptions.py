"""Webhook subscriptions (admin only): create, list, read, delete, and each
endpoint's deliveries with a manual retry. Sending is the worker's job
(worker.py); nothing here touches the network."""

import json

from flask import current_app
from flask_restful import Resource
from sqlalchemy import func, select, update

from core import arguments
from core.clock import utcnow
from core.errors import ApiError, not_found
from core.permissions import admin_required
from db import db
from models.webhook import EVENT_TYPES, WebhookModel, new_secret
from models.webhook_delivery import PENDING, WebhookDeliveryModel

WEBHOOK_NOT_FOUND = "Webhook not found."
MAX_URL_LENGTH = 2048


def webhook_url(value):
    """An absolute URL we may deliver to (production: https, public host)."""
    # The sender (and its HTTP client, urllib3) is the delivery worker's: a web
    # worker loads it when an admin first registers a webhook, not at its start.
    from webhooks import sender

    value = arguments.text(1, MAX_URL_LENGTH)(value)
    allow_private = current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"]
    try:
        if allow_private:
            sender.check_url(value, allow_private)
        else:
            # Checked again at every delivery: DNS may change after this.
            sender.resolve(value, allow_private)
    except sender.RefusedTarget as e:
        raise ValueError(str(e)) from None
    return value


def event_list(value):
    if not isinstance(value, list) or not value:
        raise ValueError(f"Must be a non-empty list of: {', '.join(EVENT_TYPES)}.")
    for event in value:
        if event not in EVENT_TYPES:
            raise ValueError(f"Each event must be one of: {', '.join(EVENT_TYPES)}.")
    return sorted(set(value))


webhook_parser = arguments.body_parser()
webhook_parser.add_argument("url", type=webhook_url, required=True)
webhook_parser.add_argument("events", type=event_list, required=True)


def find_webhook(webhook_id):
    webhook = db.session.get(WebhookModel, webhook_id)
    if webhook is None:
        raise not_found(WEBHOOK_NOT_FOUND)
    return webhook


def count(model, *where):
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


class WebhookList(Resource):
    @admin_required
    def post(self):
        data = webhook_parser.parse_args()
        webhook = WebhookModel(
            url=data["url"], events=json.dumps(data["events"]), secret=new_secret(), created_at=utcnow()
        )
        db.session.add(webhook)
        db.session.commit()
        return webhook.json(with_secret=True), 201

    @admin_required
    def get(self):
        page, per_page = arguments.paging()
        rows = db.session.execute(
            select(WebhookModel).order_by(WebhookModel.id).limit(per_page).offset((page - 1) * per_page)
        ).scalars()
        return arguments.paged("webhooks", [w.json() for w in rows], page, per_page, count(WebhookModel))


class Webhook(Resource):
    @admin_required
    def get(self, webhook_id):
        return find_webhook(webhook_id).json(), 200

    @admin_required
    def delete(self, webhook_id):
        webhook = find_webhook(webhook_id)
        # Its deliveries go too (ON DELETE CASCADE); the worker skips any in flight.
        db.session.delete(webhook)
        db.session.commit()
        return {"message": "Webhook deleted."}, 200


class WebhookDeliveryList(Resource):
    @admin_required
    def get(self, webhook_id):
        find_webhook(webhook_id)
        page, per_page = arguments.paging()
        mine = WebhookDeliveryModel.webhook_id == webhook_id
        rows = db.session.execute(
            select(WebhookDeliveryModel)
            .where(mine)
            .order_by(WebhookDeliveryModel.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).scalars()
        return arguments.paged(
            "deliveries", [d.json() for d in rows], page, per_page, count(WebhookDeliveryModel, mine)
        )


class WebhookDeliveryRetry(Resource):
    @admin_required
    def post(self, webhook_id, delivery_id):
        now = utcnow()
        # Due now, with a fresh retry window; a claim in flight is dropped, so
        # the worker that holds it cannot overwrite this.
        retried = db.session.execute(
            update(WebhookDeliveryModel)
            .where(WebhookDeliveryModel.id == delivery_id, WebhookDeliveryModel.webhook_id == webhook_id)
            .values(status=PENDING, next_attempt_at=now, window_started_at=now, claimed_until=None, claim_token=None)
        ).rowcount
        if not retried:
            db.session.rollback()
            raise ApiError(404, "not_found", "Delivery not found.")
        db.session.commit()
        delivery = db.session.get(WebhookDeliveryModel, delivery_id)
        if delivery is None:  # its webhook was deleted meanwhile
            raise ApiError(404, "not_found", "Delivery not found.")
        return delivery.json(), 202
