"""Webhook delivery end to end: the real worker process (python -m webhooks.worker,
a Huey consumer and the outbox poller), a real database, a real queue, and a
real HTTP receiver that verifies every delivery with `standardwebhooks`.

Two stacks, as deployed: SQLite with the embedded queue (SqliteHuey, the
default), and PostgreSQL with Redis (REDIS_URL set). The backoff schedule and
the claim lease are made short by configuration, so outages and kills
recover in seconds. Times are printed (run with -s to see them), never asserted.
The outage lasts WEBHOOK_TEST_OUTAGE_SECONDS (default 15, to keep the suite
short; 30 was measured too, see docs/webhooks.md, "Measured").
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from flask_migrate import upgrade
from sqlalchemy import select

from app import create_app
from db import db
from models.webhook_delivery import WebhookDeliveryModel
from tests.support import services
from tests.support.live_server import ROOT
from tests.support.users import Users
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.live

OUTAGE_SECONDS = float(os.environ.get("WEBHOOK_TEST_OUTAGE_SECONDS", 15))
JWT_SECRET = secrets.token_hex(32)


class Stack:
    """A database (+ Redis), an in-process app to make changes with, and
    worker processes started on demand."""

    def __init__(self, database_url, redis_url, workdir):
        self.database_url, self.redis_url, self.workdir = database_url, redis_url, workdir
        self.app = create_app(
            {
                "APP_ENV": "testing",
                "SQLALCHEMY_DATABASE_URI": database_url,
                "JWT_SECRET_KEY": JWT_SECRET,
                "REDIS_URL": None,
                "REDIS_KEY_PREFIX": services.REDIS_KEY_PREFIX,
            }
        )
        with self.app.app_context():
            upgrade()
        self.client = self.app.test_client()
        self.admin = Users(self.app, self.client).create("admin", admin=True)
        self.workers = []
        self.env = {
            **os.environ,
            "APP_ENV": "development",
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": JWT_SECRET,
            "REDIS_KEY_PREFIX": services.REDIS_KEY_PREFIX,
            "WEBHOOK_QUEUE_PATH": str(workdir / "webhooks-queue.db"),
            "WEBHOOK_POLL_SECONDS": "0.1",
            "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
            "WEBHOOK_RETRY_MAX_SECONDS": "2",
            "WEBHOOK_CLAIM_SECONDS": "3",
            "WEBHOOK_WORKER_THREADS": "4",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        }
        self.env.pop("REDIS_URL", None)
        if redis_url:
            self.env["REDIS_URL"] = redis_url

    # --- workers ---------------------------------------------------------
    def start_worker(self, **env):
        log = open(self.workdir / f"worker-{len(self.workers)}.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "webhooks.worker"],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(process)
        return process

    @staticmethod
    def kill(process, sig=signal.SIGKILL):
        if process.poll() is None:
            os.killpg(process.pid, sig)
            process.wait(timeout=15)

    def stop_all(self):
        for process in self.workers:
            self.kill(process, signal.SIGTERM) if process.poll() is None else None
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()

    # --- the API ---------------------------------------------------------
    def subscribe(self, url, events=("item.created", "item.updated", "item.deleted")):
        response = self.client.post(
            "/webhooks", headers=self.admin["headers"], json={"url": url, "events": list(events)}
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def change_items(self, count, prefix="item"):
        """`count` item changes through the API: creates, then updates."""
        store = self.client.post(f"/store/{prefix}-store", headers=self.admin["headers"]).get_json()
        for n in range(count):
            name = f"{prefix}-{n // 2}"  # every name is created, then updated
            response = self.client.put(
                f"/item/{name}", headers=self.admin["headers"], json={"price": n, "store_id": store["id"]}
            )
            assert response.status_code in (200, 201)

    def deliveries(self, webhook_id):
        with self.app.app_context():
            rows = (
                db.session.execute(select(WebhookDeliveryModel).where(WebhookDeliveryModel.webhook_id == webhook_id))
                .scalars()
                .all()
            )
            db.session.remove()
            return rows

    def message_ids(self, webhook_id):
        return {row.message_id for row in self.deliveries(webhook_id)}

    def wait_until_settled(self, webhook_id, timeout=30):
        """Wait until no delivery is pending; the statuses."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = Counter(row.status for row in self.deliveries(webhook_id))
            if not statuses["pending"]:
                return statuses
            time.sleep(0.1)
        raise AssertionError(f"still pending after {timeout}s: {statuses}")


@pytest.fixture(params=["sqlite+embedded", "postgresql+redis"])
def stack(request, tmp_path):
    database, queue = request.param.split("+")
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'webhooks.db'}"
    else:
        url = services.scratch_database("stores_webhooks")
    redis_url = None
    if queue == "redis":
        services.fresh_redis()
        redis_url = services.REDIS_URL
    stack = Stack(url, redis_url, tmp_path)
    stack.name = request.param
    yield stack
    stack.stop_all()


def assert_nothing_lost_nothing_invented(stack, hook, receiver):
    expected = stack.message_ids(hook["id"])
    received = receiver.ids()
    assert receiver.bad_signatures == 0
    assert set(received) == expected  # every event, and no other
    for message_id, copies in received.items():
        if copies > 1:
            # A duplicate is a retry of one event: the same id, the same body.
            bodies = {json.dumps(body, sort_keys=True) for mid, body in receiver.received if mid == message_id}
            assert len(bodies) == 1
    return sum(received.values()) - len(received)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_thousand_changes_are_all_delivered_and_verified(stack, workers):
    with Receiver() as receiver:
        hook = stack.subscribe(receiver.url)
        receiver.secret = hook["secret"]
        stack.change_items(1000)
        start = time.monotonic()
        for _ in range(workers):
            stack.start_worker()
        receiver.wait_for(stack.message_ids(hook["id"]), timeout=60)
        took = time.monotonic() - start
        assert stack.wait_until_settled(hook["id"]) == {"delivered": 1000}
        duplicates = assert_nothing_lost_nothing_invented(stack, hook, receiver)
    first = receiver.received[0][1]
    assert first["type"] in ("item.created", "item.updated") and "data" in first and first["timestamp"]
    print(
        f"\nFIGURE {stack.name}: 1000 events delivered by {workers} worker(s) in {took:.2f}s (duplicates: {duplicates})"
    )


def test_receiver_down_then_up_gets_everything(stack):
    receiver = Receiver()
    hook = stack.subscribe(receiver.url)
    receiver.secret = hook["secret"]
    stack.start_worker()
    stack.change_items(50, prefix="outage")
    time.sleep(OUTAGE_SECONDS)  # the receiver is down: every attempt fails
    attempts_while_down = sum(row.attempts for row in stack.deliveries(hook["id"]))
    assert attempts_while_down >= 50
    with receiver:
        took = receiver.wait_for(stack.message_ids(hook["id"]), timeout=30)
        assert stack.wait_until_settled(hook["id"]) == {"delivered": 50}
        assert_nothing_lost_nothing_invented(stack, hook, receiver)
    assert all(row.attempts >= 2 and row.last_status_code == 204 for row in stack.deliveries(hook["id"]))
    print(
        f"\nFIGURE {stack.name}: receiver down {OUTAGE_SECONDS:.0f}s ({attempts_while_down} failed "
        f"attempts), all 50 delivered {took:.2f}s after it came back"
    )


def test_500_then_200_is_retried_and_exhausted_retries_fail_until_retried_by_hand(stack):
    with Receiver() as receiver:
        hook = stack.subscribe(receiver.url)
        receiver.secret = hook["secret"]
        receiver.fail_next(15, status=500)
        stack.change_items(10, prefix="flaky")
        worker = stack.start_worker()
        receiver.wait_for(stack.message_ids(hook["id"]), timeout=30)
        assert stack.wait_until_settled(hook["id"]) == {"delivered": 10}
        rows = stack.deliveries(hook["id"])
        assert sum(row.attempts for row in rows) == 25
        stack.kill(worker, signal.SIGTERM)

        # A retry window of 2 s: an endpoint that keeps failing ends `failed`.
        stack.start_worker(WEBHOOK_RETRY_WINDOW_SECONDS="2")
        receiver.fail_next(10**6, status=503)
        stack.change_items(2, prefix="doomed")
        statuses = stack.wait_until_settled(hook["id"])
        assert statuses == {"delivered": 10, "failed": 2}
        failed = [row for row in stack.deliveries(hook["id"]) if row.status == "failed"]
        assert all(row.last_status_code == 503 and row.last_error == "HTTP 503" for row in failed)

        # The manual retry sends it again, with the same webhook-id.
        receiver.fail_next(0)
        response = stack.client.post(
            f"/webhooks/{hook['id']}/deliveries/{failed[0].id}/retry", headers=stack.admin["headers"]
        )
        assert response.status_code == 202
        receiver.wait_for({failed[0].message_id}, timeout=15)


def test_worker_killed_mid_batch_loses_nothing(stack):
    with Receiver() as receiver:
        hook = stack.subscribe(receiver.url)
        receiver.secret = hook["secret"]
        receiver.delay = 0.01  # slow enough that the kill lands mid-batch
        stack.change_items(300, prefix="kill")
        worker = stack.start_worker()
        deadline = time.monotonic() + 30
        while sum(receiver.ids().values()) < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
        stack.kill(worker, signal.SIGKILL)
        delivered_before = len(receiver.ids())
        in_flight = sum(1 for row in stack.deliveries(hook["id"]) if row.claim_token and row.status == "pending")
        assert delivered_before < 300
        start = time.monotonic()
        stack.start_worker()
        receiver.wait_for(stack.message_ids(hook["id"]), timeout=60)
        took = time.monotonic() - start
        assert stack.wait_until_settled(hook["id"]) == {"delivered": 300}
        duplicates = assert_nothing_lost_nothing_invented(stack, hook, receiver)
    print(
        f"\nFIGURE {stack.name}: SIGKILL after {delivered_before}/300 delivered ({in_flight} claimed "
        f"in flight); restarted worker finished in {took:.2f}s; duplicates {duplicates}, all 300 delivered"
    )
