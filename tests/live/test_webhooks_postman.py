"""The webhooks Postman collection (postman/webhooks.postman_collection.json),
run by newman against the real server (uWSGI, two workers, PostgreSQL) with a
Jodoo secret set and a local receiver for the subscribed endpoint: every
assertion passes, twice in a row on the same database. Its Jodoo requests
sign their pushes in pre-request scripts (CryptoJS.SHA1)."""

import pytest
import requests

from tests.live.conftest import ROOT, flask_cli, run_newman
from tests.support import services
from tests.support.live_server import LiveServer
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.live

COLLECTION = ROOT / "postman" / "webhooks.postman_collection.json"
SECRET = "postman-jodoo-secret"
ADMIN, PASSWORD = "postman_admin", "postman-admin-password"


def test_webhooks_collection_passes(newman_bin, tmp_path):
    url = services.scratch_database("stores_webhooks_postman")
    # Pushes act as the admin, registered below before the collection runs.
    env = {"JODOO_WEBHOOK_SECRET": SECRET, "JODOO_ACTING_USER": ADMIN, "WEBHOOK_QUEUE_PATH": str(tmp_path / "queue.db")}
    with LiveServer(url, processes=2, extra_env=env) as server, Receiver() as receiver:
        response = requests.post(f"{server.url}/register", json={"username": ADMIN, "password": PASSWORD}, timeout=10)
        assert response.status_code == 201, response.text
        flask_cli(server.env, "make-admin", ADMIN)
        env_vars = {
            "base_url": server.url,
            "admin_username": ADMIN,
            "admin_password": PASSWORD,
            "jodoo_secret": SECRET,
            "receiver_url": receiver.url,
        }
        stats = run_newman(newman_bin, COLLECTION, tmp_path, "webhooks", env_vars, "--iteration-count", "2")
    assert stats["assertions"]["failed"] == 0 and stats["iterations"]["total"] == 2
    assert stats["assertions"]["total"] >= 2 * stats["requests"]["total"]
