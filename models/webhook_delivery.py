"""The transactional outbox: one row per event per subscribed webhook.

A row is written in the same transaction as the change it describes
(`webhooks.outbox.record`), so a rolled-back change leaves none and a committed one
always has its row, even if the process dies right after the commit. The
worker (webhooks/worker.py) claims due rows, sends them, and writes the
outcome back here: the row is the durable record of the delivery, whatever
happens to the task queue.
"""

from core.clock import rfc3339, utcnow
from db import db

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class WebhookDeliveryModel(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The worker's claim query: due pending rows, oldest first.
        db.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id = db.Column(db.Integer, primary_key=True)
    webhook_id = db.Column(
        db.Integer,
        db.ForeignKey("webhooks.id", name="fk_webhook_deliveries_webhook_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    event = db.Column(db.String(40), nullable=False)
    # The Standard Webhooks `webhook-id`: one per event (shared by the
    # endpoints it goes to), the same on every retry so receivers can dedupe.
    message_id = db.Column(db.String(40), nullable=False)
    # The exact JSON body sent, fixed when the event happened.
    payload = db.Column(db.Text, nullable=False)
    status = db.Column(db.String(10), nullable=False, default=PENDING)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    last_status_code = db.Column(db.Integer)
    last_error = db.Column(db.String(500))
    next_attempt_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Retries stop WEBHOOK_RETRY_WINDOW_SECONDS after this (the event, or a
    # manual retry).
    window_started_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # A worker's claim: until `claimed_until` only the holder of
    # `claim_token` may write the outcome; after it, another worker may
    # take the row (the first one died or hangs).
    claimed_until = db.Column(db.DateTime)
    claim_token = db.Column(db.String(32))
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    def json(self):
        return {
            "id": self.id,
            "event": self.event,
            "status": self.status,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "next_attempt_at": rfc3339(self.next_attempt_at) if self.status == PENDING else None,
            "created_at": rfc3339(self.created_at),
        }
