"""The webhook delivery worker: a Huey consumer plus a poller of the outbox.

    python -m webhooks.worker        # a separate process (Heroku `worker:`, systemd)
    uwsgi --ini uwsgi.ini            # runs this file as __main__ in a uWSGI mule (uwsgi.ini)

How a delivery travels:
1. A change commits its `webhook_deliveries` rows (webhooks/outbox.py): the
   outbox, the durable record of every delivery.
2. The poller thread of each worker process claims due rows in one statement
   (PostgreSQL: `FOR UPDATE SKIP LOCKED` in the claim's subquery; SQLite: the
   conditional UPDATE runs under SQLite's single write lock), stamping them
   with a claim token that expires after WEBHOOK_CLAIM_SECONDS, and enqueues
   one Huey task per row. It claims only while the queue is short, so rows
   wait in the database, not in the queue.
3. Huey's worker threads, in any worker process sharing the queue, run
   `deliver`: send the row (sender.send) and write the outcome back,
   only if the row still carries their claim token.
4. A delivery is finished when delivered, or `failed` once its next retry
   would fall outside WEBHOOK_RETRY_WINDOW_SECONDS, so even an endpoint that
   never answers leaves no row pending for ever. The poller deletes finished
   rows WEBHOOK_RETENTION_DAYS after their last attempt, and `jodoo_deliveries`
   rows that old (`prune_finished`), so the tables stay bounded.

The queue is Huey: SqliteHuey in a file (no extra service) by default, or
Redis when REDIS_URL is set, so the workers of several machines share one
queue. Either queue may lose tasks (Redis without persistence, a killed
process): a claim then simply expires and the poller claims the row again.
Delivery is at least once; receivers dedupe on `webhook-id`. Order between
deliveries is not kept.
"""

import logging
import os
import random
import threading
import uuid
from datetime import datetime, timedelta

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer
from huey.storage import RedisStorage
from sqlalchemy import delete, or_, select, update

from core.clock import utcnow
from db import db
from models.jodoo_delivery import JodooDeliveryModel
from models.jodoo_nonce import KEPT_FOR, JodooNonceModel
from models.webhook import WebhookModel
from models.webhook_delivery import DELIVERED, FAILED, PENDING, WebhookDeliveryModel
from webhooks import sender

log = logging.getLogger("stores_api.webhooks")
DELIVERIES = WebhookDeliveryModel.__table__
# Pruning: the poller prunes at most this often, and each statement deletes at
# most PRUNE_BATCH rows, so no long transaction holds locks or stalls dispatch.
PRUNE_EVERY_SECONDS = 600
PRUNE_BATCH = 1000


class PrefixedRedisStorage(RedisStorage):
    """Huey's Redis storage with every key under REDIS_KEY_PREFIX, so the
    queue never collides with other apps (or test runs) sharing the Redis."""

    def __init__(self, name="webhooks", key_prefix="", **kwargs):
        super().__init__(name=name, **kwargs)
        base = f"{key_prefix}huey:{name}"
        self.queue_key = f"{base}:queue"
        self.schedule_key = f"{base}:schedule"
        self.result_key = f"{base}:results"
        self.counter_key = f"{base}:counters"
        self.notify_prefix = f"{base}:notify:"


class PrefixedRedisHuey(RedisHuey):
    storage_class = PrefixedRedisStorage


def make_huey(config, instance_path):
    """The queue the configuration asks for: Redis when REDIS_URL is set."""
    if config.get("REDIS_URL"):
        from config import redis_options

        return PrefixedRedisHuey(
            "webhooks",
            results=False,
            url=config["REDIS_URL"],
            key_prefix=config["REDIS_KEY_PREFIX"],
            **redis_options(config),
        )
    path = config.get("WEBHOOK_QUEUE_PATH") or os.path.join(instance_path, "webhooks-queue.db")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return SqliteHuey("webhooks", results=False, filename=path)


def retry_delay(config, attempts):
    """Seconds before the next attempt, after `attempts` failed ones:
    exponential (BASE, 2*BASE, 4*BASE, ...) up to MAX, with +-20 % jitter so
    that endpoints that failed together do not all retry together."""
    delay = config["WEBHOOK_RETRY_BASE_SECONDS"] * 2 ** (attempts - 1)
    return min(delay, config["WEBHOOK_RETRY_MAX_SECONDS"]) * random.uniform(0.8, 1.2)


def claim_due(limit, lease_seconds, now=None):
    """Claim up to `limit` due rows for this worker; their ids and the claim token."""
    now = now or utcnow()
    token = uuid.uuid4().hex
    due = (
        select(DELIVERIES.c.id)
        .where(
            DELIVERIES.c.status == PENDING,
            DELIVERIES.c.next_attempt_at <= now,
            or_(DELIVERIES.c.claimed_until.is_(None), DELIVERIES.c.claimed_until < now),
        )
        .order_by(DELIVERIES.c.next_attempt_at)
        .limit(limit)
        # PostgreSQL: rows another worker is claiming right now are skipped,
        # not waited for. (SQLite has no row locks; it ignores this.)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(DELIVERIES)
        .where(DELIVERIES.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=now + timedelta(seconds=lease_seconds), claim_token=token)
        .returning(DELIVERIES.c.id)
    )
    ids = list(db.session.execute(claim).scalars())
    db.session.commit()
    return ids, token


def outcome_values(config, row, outcome, now=None):
    """The columns to write after one attempt."""
    attempts = row.attempts + 1
    values = {
        "attempts": attempts,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "claimed_until": None,
        "claim_token": None,
    }
    if outcome.ok:
        return {**values, "status": DELIVERED}
    next_at = (now or utcnow()) + timedelta(seconds=retry_delay(config, attempts))
    window_end = row.window_started_at + timedelta(seconds=config["WEBHOOK_RETRY_WINDOW_SECONDS"])
    if next_at > window_end:
        return {**values, "status": FAILED}
    return {**values, "status": PENDING, "next_attempt_at": next_at}


def deliver_claimed(app, delivery_id, token, now=None):
    """Send one claimed row and record the outcome (the Huey task's body)."""
    with app.app_context():
        try:
            send_and_record(app.config, delivery_id, token, now)
        finally:
            db.session.remove()


def send_and_record(config, delivery_id, token, now=None):
    row = db.session.execute(
        select(DELIVERIES, WebhookModel.url, WebhookModel.secret)
        .join(WebhookModel, WebhookModel.id == DELIVERIES.c.webhook_id)
        .where(DELIVERIES.c.id == delivery_id)
    ).first()
    db.session.rollback()  # no transaction held open during the send
    # Gone (webhook deleted), done, or re-claimed by another worker after
    # our claim expired: not ours to send any more.
    if row is None or row.status != PENDING or row.claim_token != token:
        return
    outcome = sender.send(
        row.url,
        row.secret,
        row.message_id,
        row.payload,
        timeout=config["WEBHOOK_TIMEOUT_SECONDS"],
        allow_private=config["WEBHOOK_ALLOW_PRIVATE_TARGETS"],
    )
    db.session.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.claim_token == token)
        .values(**outcome_values(config, row, outcome, now))
    )
    db.session.commit()


def prune_finished(retention_days, now=None, batch=None):
    """Delete up to `batch` rows older than the retention from each table
    below; how many, by table name. Each table: its key, and what makes a row
    old enough to go (a timestamp column before the cutoff)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    batch = batch or PRUNE_BATCH
    tables = (
        (
            WebhookDeliveryModel.__table__.c.id,
            # Finished rows only: a pending one is still to be sent. Once a
            # row is finished, next_attempt_at is when its last attempt was
            # due, i.e. about when it finished (a manual retry moves it to
            # the retry's time, so a retried row is kept its full retention).
            WebhookDeliveryModel.status.in_((DELIVERED, FAILED)),
            WebhookDeliveryModel.next_attempt_at < cutoff,
        ),
        (
            # A push's id guards against copies of it for the retention; a
            # copy signed more than 5 minutes ago is refused by its timestamp
            # anyway.
            JodooDeliveryModel.__table__.c.deliver_id,
            JodooDeliveryModel.applied_at < cutoff,
        ),
        (
            # A signed push is remembered only while its timestamp could
            # still pass (models/jodoo_nonce.py), whatever the retention.
            JodooNonceModel.__table__.c.key,
            JodooNonceModel.seen_at < now - KEPT_FOR,
        ),
    )
    deleted = {}
    for key, *old in tables:
        # The batch is chosen by its own statement: as a LIMIT subquery of
        # the DELETE, PostgreSQL may run it again for each row and, skipping
        # the rows already deleted, delete far more than `batch`. Rows
        # another worker is pruning are skipped, not waited for.
        chosen = db.session.execute(select(key).where(*old).limit(batch).with_for_update(skip_locked=True))
        ids = list(chosen.scalars())
        # The conditions again in the DELETE: a row changed after it was
        # chosen (SQLite: a manual retry made it pending) is not deleted.
        count = db.session.execute(delete(key.table).where(key.in_(ids), *old)).rowcount if ids else 0
        db.session.commit()
        deleted[key.table.name] = count
    return deleted


class WebhookWorker:
    """One worker process: the Huey queue and its task, and the outbox poller."""

    def __init__(self, app):
        self.app = app
        self.config = app.config
        self.huey = make_huey(app.config, app.instance_path)
        self.deliver = self.huey.task(name="webhooks.deliver")(self._deliver)
        self.next_prune_at = datetime.min

    def _deliver(self, delivery_id, token):
        deliver_claimed(self.app, delivery_id, token)

    def dispatch_due(self):
        """Claim due rows and enqueue them; how many. Claims only while the
        queue is short, so a claim never expires while waiting in the queue."""
        threads = self.config["WEBHOOK_WORKER_THREADS"]
        room = threads * 2 - len(self.huey)
        if room <= 0:
            return 0
        with self.app.app_context():
            try:
                ids, token = claim_due(room, self.config["WEBHOOK_CLAIM_SECONDS"])
            finally:
                db.session.remove()
        for delivery_id in ids:
            self.deliver(delivery_id, token)
        return len(ids)

    def prune_if_due(self, now=None):
        """Prune (prune_finished) if PRUNE_EVERY_SECONDS have passed since the
        last time; how many rows went, or None when it was not time yet."""
        now = now or utcnow()
        if now < self.next_prune_at:
            return None
        with self.app.app_context():
            try:
                deleted = prune_finished(self.config["WEBHOOK_RETENTION_DAYS"], now)
            finally:
                db.session.remove()
        # A full batch means more rows are waiting: prune again at the poll
        # loop's next turn, between dispatches, rather than in one long run.
        more = any(count >= PRUNE_BATCH for count in deleted.values())
        self.next_prune_at = now if more else now + timedelta(seconds=PRUNE_EVERY_SECONDS)
        return deleted

    def poll(self, stop_flag):
        """Prune when due and dispatch until stopped; rest WEBHOOK_POLL_SECONDS
        when nothing is due."""
        while not stop_flag.is_set():
            try:
                self.prune_if_due()
                if self.dispatch_due():
                    continue
            except Exception:
                # The database or Redis is down: log, wait, try again.
                log.exception("Webhook poller: dispatch failed; retrying")
            stop_flag.wait(self.config["WEBHOOK_POLL_SECONDS"])

    def consumer(self):
        poll = self.config["WEBHOOK_POLL_SECONDS"]
        return Consumer(
            self.huey,
            workers=self.config["WEBHOOK_WORKER_THREADS"],
            worker_type="thread",
            periodic=False,
            initial_delay=min(0.05, poll),
            max_delay=poll,
            check_worker_health=True,
        )

    def run(self):
        """Serve until SIGINT/SIGTERM (Huey's consumer handles the signals)."""
        consumer = self.consumer()
        poller = threading.Thread(target=self.poll, args=(consumer.stop_flag,), name="webhooks-poller", daemon=True)
        poller.start()
        consumer.run()


def new_worker(app):
    """A WebhookWorker from this module under its package name. Run as a
    script (`python -m`, the uWSGI mule) this file is `__main__`, and Huey
    names a task after its function's module: building the worker from
    `webhooks.worker` gives the task the same name in every process that
    shares the queue, however each was started."""
    from webhooks import worker

    return worker.WebhookWorker(app)


def main():
    logging.basicConfig(
        level=os.environ.get("WEBHOOK_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    from app import create_app  # the app, built from the environment

    new_worker(create_app()).run()


if __name__ == "__main__":
    main()
