"""Refused webhook targets in the production configuration (SSRF).

Production delivers only to https URLs whose host resolves to global
unicast addresses only (sender.py's allow-list), checked when the webhook is
created and again at every delivery (a name can be re-pointed after creation); redirects are never
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
    "https://[fec0::1]/hook",  # IPv6 site-local
    "https://[::ffff:0:7f00:1]/hook",  # IPv4-translated 127.0.0.1
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


# Every block of sender.GLOBAL_UNICAST / SPECIAL_PURPOSE has an address here
# that is judged differently without it, and the edges of each block are
# checked from outside too.
ADDRESSES = [
    # Allowed: global unicast.
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("2606:4700:4700::1111", True),
    ("2001:4860:4860::8888", True),
    ("::ffff:8.8.8.8", True),  # IPv4-mapped: judged by its IPv4 address
    ("0:0:0:0:0:ffff:0101:0101", True),  # the same form, spelt out (1.1.1.1)
    ("1.0.0.0", True),  # just past 0/8
    ("11.0.0.0", True),  # just past 10/8
    ("100.63.255.255", True),  # just before 100.64/10
    ("100.128.0.0", True),  # just past it
    ("126.255.255.255", True),  # just before 127/8
    ("128.0.0.0", True),
    ("169.253.255.255", True),
    ("169.255.0.0", True),
    ("172.15.255.255", True),  # just before 172.16/12
    ("172.32.0.0", True),  # just past it
    ("192.0.1.1", True),  # between 192.0.0/24 and 192.0.2/24
    ("192.0.3.1", True),
    ("192.31.196.1", True),  # AS112: globally reachable by the registry
    ("192.88.98.255", True),
    ("192.88.100.0", True),
    ("192.167.255.255", True),
    ("192.169.0.0", True),
    ("198.17.255.255", True),  # just before 198.18/15
    ("198.20.0.0", True),  # just past it
    ("198.51.99.255", True),
    ("198.51.101.0", True),
    ("203.0.112.255", True),
    ("203.0.114.0", True),
    ("223.255.255.255", True),  # just before multicast
    ("2000::1", True),  # start of global unicast
    ("2001:200::1", True),  # just past 2001::/23
    ("2001:db7:ffff::1", True),  # just before 2001:db8::/32
    ("2001:db9::1", True),  # just past it
    ("2003::1", True),  # just past 2002::/16
    ("2620:4f:8000::1", True),  # AS112: globally reachable by the registry
    ("3ffe:ffff::1", True),  # just before 3fff::/20
    ("3fff:1000::1", True),  # just past it
    ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", True),  # end of global unicast
    # Refused: the IPv4 special-purpose registry, and multicast.
    ("0.0.0.0", False),
    ("0.255.255.255", False),
    ("10.0.0.1", False),
    ("100.64.0.1", False),
    ("100.127.255.255", False),
    ("127.0.0.1", False),
    ("127.255.255.254", False),
    ("169.254.169.254", False),  # cloud metadata
    ("172.16.0.1", False),
    ("172.31.255.255", False),
    ("192.0.0.9", False),  # inside 192.0.0/24, though the registry calls this /32 global
    ("192.0.0.170", False),  # NAT64 discovery
    ("192.0.2.1", False),
    ("192.88.99.1", False),
    ("192.168.1.1", False),
    ("198.18.0.1", False),
    ("198.19.255.255", False),
    ("198.51.100.1", False),
    ("203.0.113.1", False),
    ("224.0.0.1", False),
    ("239.255.255.250", False),  # SSDP
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    # Refused: outside 2000::/3.
    ("::", False),
    ("::1", False),
    ("::7f00:1", False),  # IPv4-compatible
    ("::808:808", False),  # IPv4-compatible, of a public address
    ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
    ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    ("::ffff:0:7f00:1", False),  # IPv4-translated
    ("::ffff:0:808:808", False),  # IPv4-translated, of a public address
    ("64:ff9b::7f00:1", False),  # NAT64 to 127.0.0.1
    ("64:ff9b::808:808", False),  # NAT64 to a public address: refused as well
    ("64:ff9b:1::a00:1", False),
    ("100::1", False),  # discard-only
    ("fc00::1", False),
    ("fd00::1", False),
    ("fe80::1", False),
    ("fe80::1%eth0", False),  # with a scope
    ("fec0::1", False),  # site-local
    ("feff:ffff::1", False),
    ("ff02::1", False),  # multicast
    ("ff0e::1", False),  # global-scope multicast
    ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", False),  # just before 2000::/3
    ("4000::1", False),  # just past it
    ("5f00::1", False),  # SRv6 SIDs
    # Refused: IPv6 special-purpose blocks inside 2000::/3.
    ("2001::1", False),  # Teredo
    ("2001:2::1", False),  # benchmarking
    ("2001:1ff:ffff::1", False),  # end of 2001::/23
    ("2001:db8::1", False),
    ("2001:db8:ffff::1", False),
    ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
    ("2002:808:808::1", False),  # 6to4 of a public address: refused as well
    ("3fff::1", False),  # documentation
]


@pytest.mark.parametrize("address, allowed", ADDRESSES)
def test_only_global_unicast_addresses_are_allowed(address, allowed):
    assert sender.is_public(address) is allowed


def deliver_stored(app, url):
    """A webhook row stored as is (no check on the way in) with one delivery,
    which the worker then tries; the delivery's row after that attempt."""
    webhook = WebhookModel(url=url, events='["item.created"]', secret=new_secret())
    db.session.add(webhook)
    db.session.flush()
    db.session.add(WebhookDeliveryModel(webhook_id=webhook.id, event="item.created", message_id="msg_1", payload="{}"))
    db.session.commit()
    ids, token = worker.claim_due(10, 60)
    assert len(ids) == 1
    worker.deliver_claimed(app, ids[0], token)
    return db.session.get(WebhookDeliveryModel, ids[0])


def test_delivery_time_check_refuses_a_name_now_resolving_to_a_private_address(app):
    """A row whose URL passed when created (DNS was public then) but now
    resolves to loopback: the worker refuses it and nothing is sent."""
    with Receiver() as receiver, app.app_context():
        url = f"https://localhost:{receiver.port}/hook"
        row = deliver_stored(app, url)
        assert row.attempts == 1 and row.status == "pending" and row.last_status_code is None
        assert row.last_error.startswith("refused: The host resolves to a non-public address")
        assert sum(receiver.paths.values()) == 0
        db.session.remove()


@pytest.mark.parametrize("host", ["[fec0::1]", "[::ffff:0:7f00:1]"])
def test_delivery_time_check_refuses_special_purpose_ipv6(app, host):
    """Rows stored before the allow-list (or through a name re-pointed since)
    are refused by the worker before any connection is made."""
    with app.app_context():
        row = deliver_stored(app, f"https://{host}/hook")
        assert row.attempts == 1 and row.last_status_code is None
        assert row.last_error.startswith("refused: The host resolves to a non-public address")
        db.session.remove()


def test_allow_private_targets_skips_the_address_check():
    """The development and test escape hatch: a local receiver is delivered to."""
    with Receiver(new_secret()) as receiver:
        outcome = sender.send(receiver.url, receiver.secret, "msg_1", "{}", timeout=5, allow_private=True)
        assert outcome.ok and receiver.ids() == {"msg_1": 1}
        refused = sender.send(receiver.url, receiver.secret, "msg_2", "{}", timeout=5, allow_private=False)
        assert refused.error.startswith("refused") and receiver.ids() == {"msg_1": 1}


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
