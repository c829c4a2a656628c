"""The webhooks Postman collection (postman/webhooks.postman_collection.json),
run by newman against the real server (uWSGI, two workers, PostgreSQL) with a
Jodoo secret set and a local receiver for the subscribed endpoint: every
assertion passes, twice in a row on the same database. Its Jodoo requests
sign their pushes in pre-request scripts (CryptoJS.SHA1)."""

import json
import subprocess

import pytest
import requests

from tests import services
from tests.e2e.conftest import ENVIRONMENT, ROOT, flask_cli
from tests.live import LiveServer
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.live

COLLECTION = ROOT / "postman" / "webhooks.postman_collection.json"
SECRET = "postman-jodoo-secret"
ADMIN, PASSWORD = "postman_admin", "postman-admin-password"


def test_webhooks_collection_passes(newman_bin, tmp_path):
    url = services.scratch_database("stores_webhooks_postman")
    env = {"JODOO_WEBHOOK_SECRET": SECRET, "WEBHOOK_QUEUE_PATH": str(tmp_path / "queue.db")}
    with LiveServer(url, processes=2, extra_env=env) as server, Receiver() as receiver:
        response = requests.post(f"{server.url}/register", json={"username": ADMIN, "password": PASSWORD}, timeout=10)
        assert response.status_code == 201, response.text
        flask_cli(server.env, "make-admin", ADMIN)
        report = tmp_path / "newman.json"
        result = subprocess.run(
            [
                str(newman_bin),
                "run",
                str(COLLECTION),
                "-e",
                str(ENVIRONMENT),
                "--env-var",
                f"base_url={server.url}",
                "--env-var",
                f"admin_username={ADMIN}",
                "--env-var",
                f"admin_password={PASSWORD}",
                "--env-var",
                f"jodoo_secret={SECRET}",
                "--env-var",
                f"receiver_url={receiver.url}",
                "--iteration-count",
                "2",
                "--reporters",
                "cli,json",
                "--reporter-json-export",
                str(report),
                "--color",
                "off",
                "--disable-unicode",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    run = json.loads(report.read_text())["run"]
    stats = run["stats"]
    failures = [
        f"{f['source'].get('name')}: {f['error'].get('test') or ''} {f['error']['message']}" for f in run["failures"]
    ]
    print(
        f"newman (webhooks): {stats['requests']['total']} requests, "
        f"{stats['assertions']['total']} assertions ({stats['assertions']['failed']} failed)"
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert failures == []
    assert stats["assertions"]["failed"] == 0 and stats["iterations"]["total"] == 2
    assert stats["assertions"]["total"] >= 2 * stats["requests"]["total"]
