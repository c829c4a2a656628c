"""Sending one webhook delivery, safely: signed, bounded, and never to an
address inside our own network.

- Signing: the Standard Webhooks scheme (`standardwebhooks` package):
  headers `webhook-id` (stable across retries), `webhook-timestamp` (this
  attempt), `webhook-signature` (`v1,<base64 HMAC-SHA256>`).
- SSRF: the host is resolved here, at delivery time (DNS can be re-pointed
  after the webhook was created), every address it resolves to must be public
  unless WEBHOOK_ALLOW_PRIVATE_TARGETS, and the connection goes to the very
  address that was checked (the Host header and TLS SNI/certificate check
  still use the name). Production allows https only.
- Bounds: one timeout for the whole attempt, no redirects followed (a 3xx is
  a failed attempt), at most MAX_RESPONSE_BYTES of the answer read.
"""

import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import urllib3
from standardwebhooks.webhooks import Webhook

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "stores-api-webhooks/1"


class RefusedTarget(ValueError):
    """The URL may not be delivered to (scheme, or a non-public address)."""


@dataclass
class Target:
    scheme: str
    host: str
    port: int
    address: str  # the checked IP address we connect to
    path: str


@dataclass
class Outcome:
    status_code: int | None  # None: no HTTP answer (refused, timeout, connection error)
    error: str | None  # None on success (2xx)

    @property
    def ok(self):
        return self.error is None


# IPv6 ranges that carry an IPv4 address inside (NAT64, 6to4, IPv4-compatible):
# through a gateway they reach that IPv4 address, private ones included.
IPV4_CARRIERS = [ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96")]


def is_public(address):
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    if ip.version == 6 and any(ip in network for network in IPV4_CARRIERS):
        return False
    # is_global is False for private, loopback, link-local (169.254/16, where
    # cloud metadata lives), shared (100.64/10), reserved and unspecified.
    return ip.is_global and not ip.is_multicast


def check_url(url, allow_private):
    """The parts of a URL we would deliver to, or RefusedTarget. No DNS."""
    parts = urlsplit(url)
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise RefusedTarget(f"The URL must use {' or '.join(allowed)}.")
    if not parts.hostname:
        raise RefusedTarget("The URL has no host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedTarget("The URL's port is not valid.") from None
    if parts.username or parts.password:
        raise RefusedTarget("The URL must not carry credentials.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def resolve(url, allow_private):
    """Resolve and check the target now; the Target holds the address to use."""
    scheme, host, port, path = check_url(url, allow_private)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise RefusedTarget(f"The host does not resolve: {e}") from None
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            # One private address is enough to refuse: a name answering both
            # public and private addresses could alternate between them.
            raise RefusedTarget(f"The host resolves to a non-public address ({refused[0]}).")
    return Target(scheme, host, port, addresses[0], path)


def signed_headers(secret, message_id, payload, host_header):
    now = datetime.now(UTC)
    return {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, payload),
    }


def connection_pool(target, timeout):
    common = {"timeout": urllib3.Timeout(total=timeout), "retries": False, "maxsize": 1}
    if target.scheme == "https":
        # Connect to the checked address; verify the certificate for the name.
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            **common,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, **common)


def send(url, secret, message_id, payload, timeout=10, allow_private=False):
    """Deliver one signed payload once; the Outcome says how it went."""
    try:
        target = resolve(url, allow_private)
    except RefusedTarget as e:
        return Outcome(None, f"refused: {e}")
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:
        host_header = f"[{target.host}]" + ("" if target.port == default_port else f":{target.port}")
    pool = connection_pool(target, timeout)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=payload.encode(),
            redirect=False,
            headers=signed_headers(secret, message_id, payload, host_header),
            preload_content=False,
            assert_same_host=False,
        )
        try:
            response.read(MAX_RESPONSE_BYTES)  # a receiver cannot make us read more
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as e:
        return Outcome(None, f"{type(e).__name__}: {e}"[:500])
    finally:
        pool.close()
    if 200 <= response.status < 300:
        return Outcome(response.status, None)
    return Outcome(response.status, f"HTTP {response.status}")
