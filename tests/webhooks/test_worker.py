import runpy
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from huey.registry import Registry
from sqlalchemy import func, insert, select

import webhooks.worker
from core.clock import utcnow
from db import db
from models.jodoo_delivery import JodooDeliveryModel
from models.jodoo_nonce import JodooNonceModel
from models.webhook import WebhookModel, new_secret
from models.webhook_delivery import WebhookDeliveryModel
from tests.support.live_server import free_port
from tests.support.webhook_receiver import Receiver
from tests.support.webhooks import subscribe
from webhooks import worker
from webhooks.outbox import record

WORKER_FILE = Path(webhooks.worker.__file__)


def test_the_delivery_task_has_one_name_however_the_worker_is_started(make_app, tmp_path):
    app = make_app(WEBHOOK_QUEUE_PATH=str(tmp_path / "queue" / "webhooks.db"))
    # As uWSGI's mule and `python -m` run it: the file's code under another module name.
    as_script = runpy.run_path(str(WORKER_FILE), run_name="__mule__")
    started_as_script = as_script["new_worker"](app)
    imported = webhooks.worker.new_worker(app)
    names = {Registry().task_to_string(w.deliver.task_class) for w in (started_as_script, imported)}
    assert names == {"webhooks.worker.webhooks.deliver"}


def test_every_attempt_of_one_event_carries_the_same_webhook_id(app, client, admin):
    """The receiver answers the first attempt 500; the retry, due after the
    backoff (the worker is told the time instead of waiting for it), carries
    the same webhook-id, and that is the one receivers dedupe on."""
    with Receiver() as receiver:
        hook = subscribe(client, admin, ["store.created"], url=receiver.url)
        receiver.secret = hook["secret"]
        receiver.fail_next(1, 500)
        client.post("/store/shop", headers=admin["headers"])
        with app.app_context():
            ids, token = worker.claim_due(10, 60)
            assert len(ids) == 1
            worker.deliver_claimed(app, ids[0], token)
            assert worker.claim_due(10, 60)[0] == []  # not due again yet
            later = utcnow() + timedelta(seconds=app.config["WEBHOOK_RETRY_BASE_SECONDS"] * 1.2 + 1)
            again, token = worker.claim_due(10, 60, now=later)
            assert again == ids
            worker.deliver_claimed(app, ids[0], token, now=later)
            row = db.session.get(WebhookDeliveryModel, ids[0])
            assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 204)
            db.session.remove()
    first, second = receiver.attempt_ids
    assert first == second == row.message_id
    assert receiver.ids() == {first: 1}  # the retry verified


def add_webhook(url="http://127.0.0.1:9/hook"):
    webhook = WebhookModel(url=url, events='["item.created"]', secret=new_secret())
    db.session.add(webhook)
    db.session.flush()
    return webhook


def add_deliveries(webhook, status, last_attempt, count=1):
    db.session.execute(
        insert(WebhookDeliveryModel),
        [
            {
                "webhook_id": webhook.id,
                "event": "item.created",
                "message_id": f"msg_{status}_{last_attempt:%Y%m%d%H%M%S}_{n}",
                "payload": "{}",
                "status": status,
                "next_attempt_at": last_attempt,
                "window_started_at": last_attempt,
                "created_at": last_attempt,
            }
            for n in range(count)
        ],
    )


def deliveries():
    """Each delivery's (status, next_attempt_at), oldest first."""
    rows = db.session.execute(
        select(WebhookDeliveryModel.status, WebhookDeliveryModel.next_attempt_at).order_by(WebhookDeliveryModel.id)
    )
    return [tuple(row) for row in rows]


def count(model):
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_prune_deletes_finished_deliveries_and_jodoo_ids_past_the_retention(app):
    now = utcnow()
    old, recent, ancient = now - timedelta(days=31), now - timedelta(days=29), now - timedelta(days=400)
    with app.app_context():
        webhook = add_webhook()
        add_deliveries(webhook, "delivered", old)
        add_deliveries(webhook, "failed", old)
        add_deliveries(webhook, "pending", ancient)  # still to be sent, however old
        add_deliveries(webhook, "delivered", recent)
        add_deliveries(webhook, "failed", recent)
        db.session.add_all(
            [
                JodooDeliveryModel(deliver_id="old", applied_at=old),
                JodooDeliveryModel(deliver_id="recent", applied_at=recent),
                # Signed pushes: forgotten once no copy could pass the
                # timestamp check, long before the retention.
                JodooNonceModel(key="a" * 64, seen_at=now - timedelta(minutes=12)),
                JodooNonceModel(key="b" * 64, seen_at=now - timedelta(minutes=10)),
            ]
        )
        db.session.commit()
        deleted = worker.prune_finished(30, now)
        assert deleted == {"webhook_deliveries": 2, "jodoo_deliveries": 1, "jodoo_nonces": 1}
        assert db.session.execute(select(JodooNonceModel.key)).scalars().all() == ["b" * 64]
        assert deliveries() == [("pending", ancient), ("delivered", recent), ("failed", recent)]
        assert db.session.execute(select(JodooDeliveryModel.deliver_id)).scalars().all() == ["recent"]
        db.session.remove()


def test_prune_deletes_in_bounded_batches(app):
    now = utcnow()
    with app.app_context():
        add_deliveries(add_webhook(), "delivered", now - timedelta(days=40), count=25)
        db.session.add_all(
            [JodooDeliveryModel(deliver_id=f"d{n}", applied_at=now - timedelta(days=40)) for n in range(12)]
        )
        db.session.commit()
        assert worker.prune_finished(30, now, batch=10) == {
            "webhook_deliveries": 10,
            "jodoo_deliveries": 10,
            "jodoo_nonces": 0,
        }
        assert (count(WebhookDeliveryModel), count(JodooDeliveryModel)) == (15, 2)
        db.session.remove()


@pytest.fixture
def queued_app(make_app, tmp_path):
    """An app whose worker's embedded queue is a file of this test's own."""
    return make_app(WEBHOOK_QUEUE_PATH=str(tmp_path / "webhooks-queue.db"))


def test_the_worker_prunes_every_so_often_and_at_once_while_batches_are_full(queued_app, monkeypatch):
    app = queued_app
    monkeypatch.setattr(worker, "PRUNE_BATCH", 5)
    webhook_worker = worker.WebhookWorker(app)
    now = utcnow()
    with app.app_context():
        webhook = add_webhook()
        add_deliveries(webhook, "delivered", now - timedelta(days=31), count=12)
        db.session.commit()
        pruned = [webhook_worker.prune_if_due(now)["webhook_deliveries"] for _ in range(3)]
        assert pruned == [5, 5, 2]  # a full batch: again at the next turn
        add_deliveries(webhook, "delivered", now - timedelta(days=31), count=3)
        db.session.commit()
        soon = now + timedelta(seconds=worker.PRUNE_EVERY_SECONDS - 1)
        assert webhook_worker.prune_if_due(soon) is None  # the last batch was short: not before the interval
        assert count(WebhookDeliveryModel) == 3
        later = now + timedelta(seconds=worker.PRUNE_EVERY_SECONDS)
        assert webhook_worker.prune_if_due(later)["webhook_deliveries"] == 3
        db.session.remove()


def test_the_poll_loop_prunes_with_the_configured_retention(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("WEBHOOK_RETENTION_DAYS", "7")
    app = make_app(WEBHOOK_QUEUE_PATH=str(tmp_path / "webhooks-queue.db"))
    assert app.config["WEBHOOK_RETENTION_DAYS"] == 7
    now = utcnow()
    with app.app_context():
        webhook = add_webhook()
        add_deliveries(webhook, "delivered", now - timedelta(days=8))
        add_deliveries(webhook, "delivered", now - timedelta(days=6))
        db.session.commit()
        db.session.remove()
    webhook_worker = worker.WebhookWorker(app)
    stop = threading.Event()
    poller = threading.Thread(target=webhook_worker.poll, args=(stop,))
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with app.app_context():
                left = count(WebhookDeliveryModel)
                db.session.remove()
            if left == 1:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        poller.join(10)
    assert left == 1


def test_a_dead_endpoint_leaves_the_outbox_bounded(make_app, tmp_path):
    """Thousands of events to an endpoint that never answers (a closed local
    port): each delivery is retried until the retry window ends, then fails
    for good, and the poller deletes it once the retention has passed after
    its last attempt. Time is the worker's `now`, moved forward, not slept."""
    window = 3600.0  # at most two attempts each: what is measured here is the rows, not the backoff
    app = make_app(
        WEBHOOK_QUEUE_PATH=str(tmp_path / "webhooks-queue.db"),
        WEBHOOK_RETRY_BASE_SECONDS=3600.0,
        WEBHOOK_RETRY_MAX_SECONDS=3600.0,
        WEBHOOK_RETRY_WINDOW_SECONDS=window,
        WEBHOOK_TIMEOUT_SECONDS=2.0,
    )
    retention = timedelta(days=app.config["WEBHOOK_RETENTION_DAYS"])
    events = 2000
    with app.app_context():
        add_webhook(url=f"http://127.0.0.1:{free_port()}/hook")  # nothing listens there
        db.session.commit()
        for n in range(events):
            record("item.created", {"id": n})
        db.session.commit()
        start = utcnow()
        db.session.remove()
    webhook_worker = worker.WebhookWorker(app)
    now, counts, attempts = start, {}, 0
    while now <= start + timedelta(seconds=window) + retention + timedelta(days=1):
        while webhook_worker.prune_if_due(now):  # as the poll loop does: again while batches are full
            pass
        with app.app_context():
            ids, token = worker.claim_due(events, 60, now=now)
            for delivery_id in ids:
                worker.send_and_record(app.config, delivery_id, token, now=now)
            attempts += len(ids)
            counts[now - start] = dict(
                db.session.execute(
                    select(WebhookDeliveryModel.status, func.count()).group_by(WebhookDeliveryModel.status)
                ).all()
            )
            db.session.remove()
        now += timedelta(minutes=15) if now - start < timedelta(days=1) else timedelta(days=1)
    print(f"\n{events} events, {attempts} attempts; rows by status at (simulated) times since the events:")
    for elapsed, by_status in counts.items():
        if elapsed in (timedelta(0), timedelta(minutes=45), timedelta(hours=2)) or elapsed.days in (1, 29, 30, 31):
            print(f"  {elapsed}: {by_status}")
    after_window = [c for t, c in counts.items() if timedelta(seconds=window) < t < retention]
    assert after_window and all(c == {"failed": events} for c in after_window)
    assert max(sum(c.values()) for c in counts.values()) == events
    assert counts[max(counts)] == {}
    assert events < attempts <= events * 2  # retried within the window, then no more
