"""Recording webhook events: the write side of the transactional outbox.

    outbox.record("item.updated", item)     # then the caller commits

`record` adds one `webhook_deliveries` row per webhook subscribed to the
event type, to the *current* session, and never commits: the rows are
written inside the caller's commit (a `before_commit` hook, after the flush
that gives new rows their ids) and so commit or roll back with the change
they describe. No network, no queue, on the
request path: the worker (worker.py) finds the rows and sends them.

`data` is what the API shows for the resource (for deletes, its last state):
a dict, or a model with a `json()` method. Other code (the image routes, the
Jodoo push) calls this same function.
"""

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import event, insert, literal, select
from sqlalchemy.orm import Session

from core.clock import utcnow
from db import db
from models.webhook import EVENT_TYPES, WebhookModel
from models.webhook_delivery import PENDING, WebhookDeliveryModel


def event_body(event_type, data):
    """The JSON body every endpoint receives for this event."""
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": timestamp, "data": data}, separators=(",", ":"), default=float)


def as_data(data):
    """The resource as the API shows it: a dict, a model's json(), or a
    zero-argument function returning one (called once ids are assigned)."""
    if callable(data):
        return data()
    if hasattr(data, "json"):
        return data.json()
    return data


def record(event_type, data):
    """Add the event to the current transaction: its outbox rows are written
    when the session commits, just before the commit itself, so they commit
    or roll back with the change. Never commits by itself."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown event type {event_type!r}")
    db.session.info.setdefault(PENDING_KEY, []).append((event_type, data))


PENDING_KEY = "webhook_events"


def write_outbox_rows(session, event_type, data):
    """One INSERT ... SELECT: a row for every webhook subscribed to the type
    (none, and no Python loop, when nobody subscribed)."""
    now = utcnow()
    subscribed = select(
        WebhookModel.id,
        literal(event_type),
        literal(f"msg_{uuid.uuid4().hex}"),
        literal(event_body(event_type, as_data(data))),
        literal(PENDING),
        literal(0),
        literal(now),
        literal(now),
        literal(now),
    ).where(WebhookModel.events.like(f'%"{event_type}"%'))
    columns = (
        "webhook_id",
        "event",
        "message_id",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "window_started_at",
        "created_at",
    )
    session.execute(insert(WebhookDeliveryModel).from_select(columns, subscribed))


def write_recorded_events(session):
    pending = session.info.pop(PENDING_KEY, None)
    if not pending:
        return
    # Flush first: new rows get their ids (the event shows them), and a
    # constraint violation raises here, inside commit(), where the caller's
    # handler for it (commit_or_raise, insert_item) catches it.
    session.flush()
    for event_type, data in pending:
        write_outbox_rows(session, event_type, data)


def forget_rolled_back_events(session, transaction):
    # A rolled-back change emits nothing.
    if transaction.parent is None:
        session.info.pop(PENDING_KEY, None)


def register_outbox():
    """Called by create_app: sessions write recorded events at commit and
    forget them at rollback. Registered once per process, whatever the number
    of apps (the listeners are on SQLAlchemy's Session class)."""
    for name, listener in (
        ("before_commit", write_recorded_events),
        ("after_transaction_end", forget_rolled_back_events),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
