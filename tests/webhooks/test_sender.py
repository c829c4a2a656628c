"""Refused webhook targets in the production configuration (SSRF).

Production delivers only to https URLs whose host resolves to public
addresses only, checked when the webhook is created and again at every
delivery (a name can be re-pointed after creation); redirects are never
followed. Development and tests may allow local receivers
(WEBHOOK_ALLOW_PRIVATE_TARGETS), which is what the other webhook tests use.
"""

import pytest

from db import db
from models.webhook import WebhookModel, new_secret
from models.webhook_delivery import WebhookDeliveryModel
from tests.support.webhook_receiver import Receiver
from webhooks import sender, worker

REFUSED = [
    "http://127.0.0.1/hook",  # plain http
    "https://127.0.0.1/hook",  # loopback
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://localhost/hook",  # a name resolving to loopback
    "https://10.1.2.3/hook",  # private
    "https://192.168.0.1/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT (shared)
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "https://0.0.0.0/hook",
    "https://user:pw@example.com/hook",  # credentials in the URL
]


@pytest.fixture
def app(make_app):
    app = make_app(APP_ENV="production")
    assert app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] is False  # production's default
    return app


@pytest.mark.parametrize("url", REFUSED)
def test_production_refuses_internal_targets_at_creation(client, users, url):
    admin = users.create("admin", admin=True)
    response = client.post("/webhooks", headers=admin["headers"], json={"url": url, "events": ["item.created"]})
    assert response.status_code == 400, response.get_json()
    assert "url" in response.get_json()["errors"]


@pytest.mark.parametrize(
    "address, public",
    [
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 to 127.0.0.1
        ("64:ff9b:1::a00:1", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("::7f00:1", False),  # IPv4-compatible
        ("224.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
    ],
)
def test_public_address_check(address, public):
    assert sender.is_public(address) is public


def test_delivery_time_check_refuses_a_name_now_resolving_to_a_private_address(app):
    """A row whose URL passed when created (DNS was public then) but now
    resolves to loopback: the worker refuses it and nothing is sent."""
    with Receiver() as receiver, app.app_context():
        url = f"https://localhost:{receiver.port}/hook"
        webhook = WebhookModel(url=url, events='["item.created"]', secret=new_secret())
        db.session.add(webhook)
        db.session.flush()
        db.session.add(
            WebhookDeliveryModel(webhook_id=webhook.id, event="item.created", message_id="msg_1", payload="{}")
        )
        db.session.commit()
        ids, token = worker.claim_due(10, 60)
        assert len(ids) == 1
        worker.deliver_claimed(app, ids[0], token)
        row = db.session.get(WebhookDeliveryModel, ids[0])
        assert row.attempts == 1 and row.status == "pending" and row.last_status_code is None
        assert row.last_error.startswith("refused: The host resolves to a non-public address")
        assert sum(receiver.paths.values()) == 0
        db.session.remove()


def test_redirects_are_not_followed():
    """Even where local targets are allowed: a 3xx is a failed attempt, and the
    Location (here a second local receiver, standing for 169.254.169.254) is
    never requested."""
    with Receiver() as first, Receiver() as second:
        first.redirect_to = second.url
        outcome = sender.send(first.url, new_secret(), "msg_1", "{}", timeout=5, allow_private=True)
        assert (outcome.status_code, outcome.error) == (302, "HTTP 302")
        assert sum(first.paths.values()) == 1 and sum(second.paths.values()) == 0


def test_metadata_address_is_refused_at_delivery_in_production():
    outcome = sender.send(
        "http://169.254.169.254/latest/meta-data/", new_secret(), "msg_1", "{}", timeout=5, allow_private=False
    )
    assert outcome.status_code is None and outcome.error.startswith("refused")


def test_response_body_read_is_capped_and_timeout_applies():
    """A receiver that never answers costs one timeout, not a stuck worker."""
    with Receiver() as slow:
        slow.delay = 3
        outcome = sender.send(slow.url, new_secret(), "msg_1", "{}", timeout=0.5, allow_private=True)
        assert outcome.status_code is None and "Timeout" in outcome.error
