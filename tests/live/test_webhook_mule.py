"""The real server (`uwsgi --ini uwsgi.ini`, two workers) with webhooks:

- its mule delivers webhooks with no other process running;
- copies of one Jodoo push sent at once, so both workers apply them
  concurrently, have exactly one effect (the unique keys of the signed push
  and of its delivery id decide);
- WEBHOOK_WORKER_EXTERNAL=1 starts no mule (a separate worker does the work).
"""

import hashlib
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support import services
from tests.support.live_server import ROOT, LiveServer
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.live

SECRET = "live-jodoo-secret"
PASSWORD = "correct-horse"


def signed_push(base_url, body, deliver_id):
    nonce, timestamp = "n0nce", str(int(time.time()))
    signature = hashlib.sha1(f"{nonce}:{body}:{SECRET}:{timestamp}".encode()).hexdigest()
    return requests.post(
        f"{base_url}/hooks/jodoo?nonce={nonce}&timestamp={timestamp}",
        data=body,
        headers={"Content-Type": "application/json", "X-JDY-Signature": signature, "X-JDY-DeliverId": deliver_id},
        timeout=10,
    )


def admin_headers(server):
    requests.post(f"{server.url}/register", json={"username": "admin", "password": PASSWORD}, timeout=10)
    subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "app", "make-admin", "admin"],
        cwd=ROOT,
        env=server.env,
        check=True,
        capture_output=True,
    )
    token = requests.post(f"{server.url}/login", json={"username": "admin", "password": PASSWORD}, timeout=10).json()[
        "access_token"
    ]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    return services.scratch_database("stores_webhooks_live")


def test_concurrent_copies_of_a_push_apply_once_and_the_mule_delivers(database_url, tmp_path):
    env = {
        "JODOO_WEBHOOK_SECRET": SECRET,
        "JODOO_ACTING_USER": "admin",  # registered by admin_headers before any push
        "WEBHOOK_QUEUE_PATH": str(tmp_path / "queue.db"),
        "WEBHOOK_POLL_SECONDS": "0.1",
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    }
    with LiveServer(database_url, processes=2, extra_env=env) as server, Receiver() as receiver:
        headers = admin_headers(server)
        hook = requests.post(
            f"{server.url}/webhooks",
            headers=headers,
            timeout=10,
            json={"url": receiver.url, "events": ["item.created", "item.updated", "store.created"]},
        ).json()
        receiver.secret = hook["secret"]
        body = json.dumps({"op": "data_create", "data": {"name": "chair", "price": 9.5, "store": "jodoo"}})
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: signed_push(server.url, body, "same-push"), range(16)))
        assert [a.status_code for a in answers] == [200] * 16, [a.text for a in answers]
        assert sum(a.json()["message"] == "Applied." for a in answers) == 1
        # One effect: one store.created and one item.created event, no update.
        deadline = time.monotonic() + 20
        while len(receiver.ids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # room for a wrong third event to show up
        types = sorted(body["type"] for _, body in receiver.received)
        assert types == ["item.created", "store.created"]
        assert receiver.bad_signatures == 0
        deliveries = requests.get(f"{server.url}/webhooks/{hook['id']}/deliveries", headers=headers, timeout=10).json()[
            "deliveries"
        ]
        assert {d["status"] for d in deliveries} == {"delivered"}
        assert requests.get(f"{server.url}/item/chair", headers=headers, timeout=10).json()["price"] == 9.5


def test_external_worker_setting_starts_no_webhook_mule(tmp_path):
    """One mule only: the relay (front/relay.py), which every server runs."""
    url = f"sqlite:///{tmp_path / 'nomule.db'}"
    with LiveServer(url, processes=1, extra_env={"WEBHOOK_WORKER_EXTERNAL": "1"}) as server:
        assert requests.get(server.url + "/health", timeout=5).status_code == 200
    log = server.log_path.read_text()
    assert "spawned uWSGI worker 1" in log and log.count("spawned uWSGI mule") == 1
