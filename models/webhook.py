"""A webhook endpoint an admin subscribed: where to send which events, and the
secret that signs them (Standard Webhooks, `whsec_<base64>`)."""

import base64
import json
import secrets

from core.clock import rfc3339, utcnow
from db import db

EVENT_TYPES = ("item.created", "item.updated", "item.deleted", "store.created", "store.deleted")


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookModel(db.Model):
    __tablename__ = "webhooks"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id = db.Column(db.Integer, primary_key=True)
    url = db.Column(db.String(2048), nullable=False)
    # A JSON list of event types, e.g. '["item.created","item.deleted"]'.
    # Kept as text (not an array type) so SQLite and PostgreSQL store it alike;
    # webhooks.outbox.record matches one type with LIKE '%"item.created"%'.
    events = db.Column(db.Text, nullable=False)
    secret = db.Column(db.String(100), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    def event_list(self):
        return json.loads(self.events)

    def json(self, with_secret=False):
        body = {"id": self.id, "url": self.url, "events": self.event_list(), "created_at": rfc3339(self.created_at)}
        if with_secret:
            body["secret"] = self.secret
        return body
