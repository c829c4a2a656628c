"""Crafted and greedy clients against the deployment as users run it:
deploy/nginx.conf in front of two `uwsgi --ini uwsgi.ini:nginx` instances,
PostgreSQL and Redis (the `deployment` fixture of conftest.py).

- Item and store names may contain "/". A path that Nginx would decode and
  normalise (`drafts%2F..%2Fbob-widget` -> `bob-widget`) must reach the app
  as the one name the client encoded, never as another item's name.
- A chunked JSON body is read whole.
- Clients trickling their bodies hold Nginx connections, never a uWSGI
  worker: Nginx reads a body whole before it passes the request on.
- Nginx's own rate limits answer 429 in the API's envelope with Retry-After,
  per client address, stricter on /login and /register.
- X-Content-Type-Options is sent once, not twice.

Flooding clients use their own loopback source addresses (127.0.0.x), so
the limits they hit are theirs alone, as for separate machines.
"""

import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

pytestmark = pytest.mark.live


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def owner(deployment):
    """An access token of a user who owns a store, and the store's id."""
    http = deployment.session()
    credentials = {"username": "path_owner", "password": "path-owner-password"}
    http.post(f"{deployment.url}/register", json=credentials, timeout=10)
    tokens = http.post(f"{deployment.url}/login", json=credentials, timeout=10).json()
    headers = bearer(tokens["access_token"])
    store = http.post(f"{deployment.url}/store/path-shop", headers=headers, timeout=10)
    assert store.status_code == 201, store.text
    return headers, store.json()["id"]


def put_item(deployment, headers, encoded_name, price, store_id):
    """PUT /item/<encoded_name>, the path sent byte for byte as given."""
    http = deployment.session()
    request = requests.Request(
        "PUT", f"{deployment.url}/item/{encoded_name}", headers=headers, json={"price": price, "store_id": store_id}
    ).prepare()
    request.url = f"{deployment.url}/item/{encoded_name}"  # no re-quoting, no normalising
    return http.send(request, timeout=10)


def get_item(deployment, headers, name):
    return deployment.session().get(f"{deployment.url}/item/{quote(name, safe='')}", headers=headers, timeout=10)


def test_dot_segments_in_a_name_never_reach_another_item(deployment, owner):
    headers, store_id = owner
    assert put_item(deployment, headers, "bob-widget", 1.0, store_id).status_code in (200, 201)

    crafted = put_item(deployment, headers, "drafts%2F..%2Fbob-widget", 99.0, store_id)
    # Whatever the app makes of the name "drafts/../bob-widget", it is not bob-widget.
    assert crafted.status_code in (200, 201, 400, 404), crafted.text
    if crafted.status_code in (200, 201):
        assert crafted.json()["name"] == "drafts/../bob-widget"
    bob = get_item(deployment, headers, "bob-widget")
    assert bob.status_code == 200 and bob.json()["price"] == 1.0, bob.text


def test_encoded_slashes_are_kept_as_the_client_sent_them(deployment, owner):
    headers, store_id = owner
    assert put_item(deployment, headers, "a%2Fb", 2.0, store_id).status_code in (200, 201)
    doubled = put_item(deployment, headers, "a%2F%2Fb", 3.0, store_id)
    assert doubled.status_code in (200, 201), doubled.text
    assert doubled.json()["name"] == "a//b"
    assert get_item(deployment, headers, "a/b").json()["price"] == 2.0
    # A name with "%" in it: decoded once, not twice.
    percent = put_item(deployment, headers, "100%2525", 4.0, store_id)
    assert percent.status_code in (200, 201) and percent.json()["name"] == "100%25"


def test_chunked_json_body_through_nginx(deployment):
    body = json.dumps({"username": "chunked_via_nginx", "password": "chunked-password"}).encode()
    # A generator body makes requests send Transfer-Encoding: chunked.
    response = deployment.session().post(
        f"{deployment.url}/register",
        data=iter([body[:7], body[7:]]),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 201, response.text


def test_trickled_bodies_hold_no_worker_behind_nginx(deployment):
    """Eight clients (more than both instances' workers together) send a
    POST's headers and then its body a byte at a time: others are answered
    as if they were not there."""
    host, port = deployment.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(deployment.nginx.cert))
    tricklers = []
    try:
        for n in range(8):
            raw = socket.create_connection((host, int(port)), timeout=5, source_address=(f"127.0.5.{n + 1}", 0))
            conn = context.wrap_socket(raw, server_hostname=host)
            conn.sendall(
                b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            tricklers.append(conn)
        time.sleep(0.5)
        http = deployment.session()
        started = time.monotonic()
        answers = [http.get(f"{deployment.url}/health", timeout=10).status_code for _ in range(10)]
        elapsed = time.monotonic() - started
        for conn in tricklers:
            conn.sendall(b" ")  # still sending, still not done
    finally:
        for conn in tricklers:
            conn.close()
    assert answers == [200] * 10
    # Correctness bound, not a speed figure: a held worker would make these wait seconds.
    assert elapsed < 3, f"10 requests took {elapsed:.1f}s beside 8 trickling bodies"


def https_from(deployment, source_address):
    """A session whose connections come from `source_address` (a 127.x.y.z)."""
    http = deployment.session()
    adapter = requests.adapters.HTTPAdapter()
    adapter.init_poolmanager(10, 10, source_address=(source_address, 0))
    http.mount("https://", adapter)
    return http


def test_login_flood_gets_nginx_429_in_the_envelope(deployment):
    """40 logins at once from one address: 10 go through at once, 20 more are
    held back to 2 a second (all 30 reach the app: 401, no such user), the
    other 10 are refused by Nginx."""

    def attempt(_):
        flooder = https_from(deployment, "127.0.0.51")  # a connection each, all at once
        return flooder.post(
            f"{deployment.url}/login", json={"username": "nobody", "password": "wrong-password"}, timeout=30
        )

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(attempt, range(40)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(429) >= 8, statuses
    assert statuses.count(401) <= 32, statuses
    limited = answers[statuses.index(429)]
    assert limited.headers["Content-Type"] == "application/json"
    assert limited.json()["error"] == "rate_limited" and limited.json()["message"]
    assert int(limited.headers["Retry-After"]) > 0
    # Another address is not affected.
    other = https_from(deployment, "127.0.0.52").post(
        f"{deployment.url}/login", json={"username": "nobody", "password": "wrong-password"}, timeout=10
    )
    assert other.status_code == 401, other.text


def test_content_type_options_sent_once(deployment):
    http = deployment.session()
    for path in ("/health", "/item/missing", "/_nothing_here"):
        response = http.get(f"{deployment.url}{path}", timeout=10)
        values = response.raw.headers.getlist("X-Content-Type-Options")
        assert values == ["nosniff"], (path, values)


def test_tls_1_2_cbc_sha1_suite_is_refused(deployment):
    """Mozilla's intermediate profile: no CBC, no SHA-1 MAC on TLS 1.2."""

    def handshake(cipher):
        context = ssl.create_default_context(cafile=str(deployment.nginx.cert))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)
        with socket.create_connection(("127.0.0.1", deployment.nginx.https_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.cipher()[0]

    with pytest.raises(ssl.SSLError):
        handshake("ECDHE-ECDSA-AES128-SHA")  # CBC with SHA-1: offered by Nginx's default list
    assert handshake("ECDHE-ECDSA-AES128-GCM-SHA256") == "ECDHE-ECDSA-AES128-GCM-SHA256"
