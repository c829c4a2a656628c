"""Sending one webhook delivery, safely: signed, bounded, and never to an
address inside our own network.

- Signing: the Standard Webhooks scheme (`standardwebhooks` package):
  headers `webhook-id` (stable across retries), `webhook-timestamp` (this
  attempt), `webhook-signature` (`v1,<base64 HMAC-SHA256>`).
- SSRF: the host is resolved here, at delivery time (DNS can be re-pointed
  after the webhook was created), every address it resolves to must be global
  unicast (an allow-list: GLOBAL_UNICAST minus SPECIAL_PURPOSE) unless
  WEBHOOK_ALLOW_PRIVATE_TARGETS, and the connection goes to the very
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


# Where a webhook may be delivered: global unicast space only. An address is
# allowed when it lies in GLOBAL_UNICAST and in none of SPECIAL_PURPOSE. The
# blocks are those of IANA's "IPv4 Special-Purpose Address Registry" and "IPv6
# Special-Purpose Address Registry" (RFC 6890 and its updates) that are not
# globally reachable or carry another address inside, plus IPv4 multicast
# (IANA "IPv4 Multicast Address Space Registry"). Python's
# `ipaddress.is_global` is not used: its answer differs between Python
# releases, and some call fec0::1 and ::ffff:0:7f00:1 global.
GLOBAL_UNICAST = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/0",  # IPv4: all of it, minus the blocks below
        # IPv6: global unicast (IANA "IPv6 Address Space" registry). Outside it,
        # and so refused without a row below: ::/128, ::1/128, ::/96
        # (IPv4-compatible), ::ffff:0:0/96 (IPv4-mapped, judged by its IPv4 in
        # is_public), ::ffff:0:0:0/96 (IPv4-translated), 64:ff9b::/96 and
        # 64:ff9b:1::/48 (NAT64), 100::/64 (discard), 5f00::/16 (SRv6 SIDs),
        # fc00::/7 (unique local), fe80::/10 (link-local), fec0::/10
        # (site-local), ff00::/8 (multicast).
        "2000::/3",
    )
)
SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, where cloud metadata (169.254.169.254) lives
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (its two anycast /32s included)
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # 6to4 relay anycast: reaches a relay, not the endpoint
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, 255.255.255.255 (limited broadcast) included
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID, ...
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: carries an IPv4 address, private ones included
        "3fff::/20",  # documentation
    )
)


def is_public(address):
    """Whether a webhook may be delivered to this IP address (see GLOBAL_UNICAST)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        # ::ffff:a.b.c.d is how a dual-stack socket names IPv4 a.b.c.d: the
        # connection goes to that IPv4 address, so that is the one judged.
        ip = ip.ipv4_mapped
    return any(ip in network for network in GLOBAL_UNICAST) and not any(ip in network for network in SPECIAL_PURPOSE)


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
