"""deploy/nginx.conf on its own: what Nginx itself answers, and what it passes on.

No database here. The errors Nginx makes itself (no uWSGI answering, body
too large, URI too long, unparsable request, plain HTTP) must be the API's
JSON envelope, and the WSGI environ Nginx sends over the uwsgi protocol must
carry the real client address, the scheme and the Host with its port. The
latter is read back from a tiny WSGI app that echoes its environ.
"""

import ipaddress
import json
import random
import socket
import ssl
import subprocess
import textwrap
import time

import pytest
import requests

from tests.live.conftest import BIN, stop_process_group
from tests.support.nginx_harness import PRODUCTION_CONF, NginxServer, free_port, wait_for_port

pytestmark = pytest.mark.live

# /status/<code> answers that status with the app's own JSON error; any other
# path echoes the environ's strings and the length of the body received.
ECHO_APP = textwrap.dedent("""
    import json

    def application(environ, start_response):
        if environ["PATH_INFO"].startswith("/status/"):
            code = int(environ["PATH_INFO"].rsplit("/", 1)[1])
            start_response(f"{code} From The App", [("Content-Type", "application/json"),
                                                     ("Retry-After", "7")])
            return [json.dumps({"error": "from_the_app", "message": "The app's own answer."}).encode()]
        fields = {key: value for key, value in environ.items() if isinstance(value, str)}
        fields["body_length"] = len(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(fields).encode()]
""")


@pytest.fixture(scope="module")
def nginx_without_backend(nginx_bin, tmp_path_factory):
    """Nginx whose upstream is a port nothing listens on."""
    nginx = NginxServer([f"127.0.0.1:{free_port()}"], prefix=tmp_path_factory.mktemp("nginx-down"))
    try:
        yield nginx.start()
    finally:
        nginx.stop()


@pytest.fixture(scope="module")
def nginx_with_echo(nginx_bin, tmp_path_factory):
    """Nginx in front of uWSGI serving the echo app."""
    folder = tmp_path_factory.mktemp("nginx-echo")
    (folder / "echo.py").write_text(ECHO_APP)
    port = free_port()
    uwsgi = subprocess.Popen(
        [
            str(BIN / "uwsgi"),
            "--socket",
            f"127.0.0.1:{port}",
            "--wsgi-file",
            str(folder / "echo.py"),
            "--master",
            "--processes",
            "1",
            "--disable-logging",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    nginx = NginxServer([f"127.0.0.1:{port}"], prefix=folder / "nginx")
    try:
        wait_for_port(port, 15, uwsgi)
        yield nginx.start()
    finally:
        nginx.stop()
        stop_process_group(uwsgi)


def client(nginx):
    http = requests.Session()
    http.trust_env = False  # ignore REQUESTS_CA_BUNDLE and proxies: trust the test certificate
    http.verify = str(nginx.cert)
    return http


def assert_envelope(response, status, error):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert response.headers["Server"] == "nginx"  # server_tokens off: no version


def test_rendered_config_passes_nginx_t(nginx_bin, tmp_path):
    nginx = NginxServer(["127.0.0.1:9"], prefix=tmp_path)
    nginx.prepare()
    assert "test is successful" in nginx.test_config()


def test_backend_down_is_503_json_with_retry_after(nginx_without_backend):
    for method in ("GET", "POST", "DELETE"):
        response = client(nginx_without_backend).request(method, f"{nginx_without_backend.base_url}/stores")
        assert_envelope(response, 503, "service_unavailable")
        assert int(response.headers["Retry-After"]) > 0


def test_body_over_65536_bytes_is_413_json(nginx_without_backend):
    http = client(nginx_without_backend)
    too_big = http.post(
        f"{nginx_without_backend.base_url}/register", data=b"x" * 65537, headers={"Content-Type": "application/json"}
    )
    assert_envelope(too_big, 413, "payload_too_large")
    # Exactly the limit passes Nginx (and meets the missing backend).
    at_limit = http.post(
        f"{nginx_without_backend.base_url}/register", data=b"x" * 65536, headers={"Content-Type": "application/json"}
    )
    assert at_limit.status_code == 503


def test_uri_too_long_is_json(nginx_without_backend):
    response = client(nginx_without_backend).get(f"{nginx_without_backend.base_url}/item/{'x' * 20000}")
    assert_envelope(response, 414, "bad_request")


def test_unparsable_request_is_400_json(nginx_without_backend):
    with socket.create_connection(("127.0.0.1", nginx_without_backend.http_port), timeout=5) as raw:
        raw.sendall(b"NOT A REQUEST\r\n\r\n")
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"] == "bad_request"


def test_plain_http_redirects_to_https_with_json(nginx_without_backend):
    response = requests.post(f"{nginx_without_backend.http_url}/login?next=1", allow_redirects=False)
    assert response.status_code == 308  # keeps the method: a POST is repeated as a POST
    # To the server's own name (server_name; the harness keeps api.example.com).
    assert response.headers["Location"] == "https://api.example.com/login?next=1"
    assert_envelope(response, 308, "https_required")


def test_redirect_ignores_the_host_the_client_sends(nginx_without_backend):
    response = requests.get(
        f"{nginx_without_backend.http_url}/health", allow_redirects=False, headers={"Host": "evil.example"}
    )
    assert response.status_code == 308
    assert response.headers["Location"] == "https://api.example.com/health"


def open_partial_tls_requests(nginx, count, source):
    """`count` TLS connections from `source`, each with half a request's headers sent."""
    context = ssl.create_default_context(cafile=str(nginx.cert))
    held = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", nginx.https_port), timeout=5, source_address=(source, 0))
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        held.append(tls)
    return held


def test_many_slow_tls_clients_leave_room_for_others(nginx_without_backend):
    """600 TLS connections from one address holding partial headers (more than
    the 512 worker_connections the tests used to run with, and under the 4096
    deploy/nginx.conf recommends): a new client is still answered at once."""
    held = open_partial_tls_requests(nginx_without_backend, 600, "127.0.0.61")
    try:
        started = time.monotonic()
        response = client(nginx_without_backend).get(f"{nginx_without_backend.base_url}/health", timeout=5)
        elapsed = time.monotonic() - started
    finally:
        for tls in held:
            tls.close()
    assert_envelope(response, 503, "service_unavailable")  # no backend here: Nginx answered
    assert elapsed < 5


def test_partial_headers_are_dropped_after_client_header_timeout(nginx_without_backend):
    """A client that never finishes its headers is let go after 10 s (Nginx's
    default: 60 s), so slow clients cannot pile up."""
    [tls] = open_partial_tls_requests(nginx_without_backend, 1, "127.0.0.62")
    tls.settimeout(30)
    started = time.monotonic()
    try:
        answer = tls.recv(65536)  # Nginx closes (reset_timedout_connection: RST or EOF)
    except (ConnectionResetError, ssl.SSLError):
        answer = b""
    finally:
        tls.close()
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"held for {elapsed:.1f}s"
    assert not answer or answer.startswith(b"HTTP/1.1 408")


def test_environ_carries_client_address_scheme_and_host(nginx_with_echo):
    response = client(nginx_with_echo).get(
        f"{nginx_with_echo.base_url}/stores?page=2",
        # A client cannot pass itself off as another address.
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"},
    )
    assert response.status_code == 200
    environ = response.json()
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert environ["HTTP_X_FORWARDED_PROTO"] == "https"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{nginx_with_echo.https_port}"
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/stores", "page=2")
    # The raw path goes on undecoded, flagged for wsgi.py to decode once.
    assert environ["STORES_API_PATH_INFO_ENCODED"] == "1"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_app_errors_pass_through_untouched(nginx_with_echo):
    # uwsgi_intercept_errors off: the app's own error bodies and headers reach
    # the client, even for the statuses Nginx has JSON pages of its own for.
    http = client(nginx_with_echo)
    for status in (404, 413, 500, 502, 503):
        response = http.get(f"{nginx_with_echo.base_url}/status/{status}")
        assert response.status_code == status
        assert response.json()["error"] == "from_the_app"
        assert response.headers["Retry-After"] == "7"


def test_body_at_the_limit_reaches_the_app_whole(nginx_with_echo):
    body = b"y" * 65536
    response = client(nginx_with_echo).post(
        f"{nginx_with_echo.base_url}/echo", data=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert response.json()["body_length"] == len(body)


def test_path_goes_on_exactly_as_the_client_encoded_it(nginx_with_echo):
    with socket.create_connection(("127.0.0.1", nginx_with_echo.https_port), timeout=5) as raw:
        context = ssl.create_default_context(cafile=str(nginx_with_echo.cert))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(
                b"GET /item/drafts%2F..%2Fbob-widget/a%2F%2Fb?x=%2F HTTP/1.0\r\n"
                b"Host: localhost\r\nConnection: close\r\n\r\n"
            )
            answer = b"".join(iter(lambda: tls.recv(65536), b""))
    environ = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert environ["PATH_INFO"] == "/item/drafts%2F..%2Fbob-widget/a%2F%2Fb"
    assert environ["QUERY_STRING"] == "x=%2F"


def test_chunked_body_reaches_uwsgi_with_its_length(nginx_with_echo):
    body = b"z" * 5000
    response = client(nginx_with_echo).post(
        f"{nginx_with_echo.base_url}/echo",
        data=iter([body[:100], body[100:]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    environ = response.json()
    assert environ["body_length"] == len(body)
    assert environ["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_TRANSFER_ENCODING" not in environ


def client_key_map() -> str:
    """deploy/nginx.conf's `map $remote_addr $stores_api_client { ... }` block."""
    text = PRODUCTION_CONF.read_text()
    start = text.index("map $remote_addr $stores_api_client {")
    return text[start : text.index("\n}\n", start) + 3]


def sample_ipv6_addresses(count=400):
    """Addresses with zero groups in every place, so that "::" falls everywhere."""
    rng = random.Random(64)
    addresses = []
    for _ in range(count):
        groups = [rng.choice([0, 0, 0, 1, rng.randrange(0x10000)]) for _ in range(8)]
        addresses.append(ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups)))
    addresses.append(ipaddress.IPv6Address("::ffff:198.51.100.7"))
    return addresses


def groups(address):
    return [int.from_bytes(address.packed[i : i + 2], "big") for i in range(0, 16, 2)]


def test_ipv6_clients_are_counted_by_their_64(nginx_bin, tmp_path):
    """The key of the limit zones: for every address, the first four groups of
    its /64 written out (as Python's ipaddress has them); IPv4 as it is."""
    port = free_port()
    for folder in ("logs", "tmp"):
        (tmp_path / folder).mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"""
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/logs/error.log warn;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/tmp;
            {client_key_map()}
            server {{
                listen 127.0.0.1:{port};
                set_real_ip_from 127.0.0.1;
                real_ip_header X-Real-IP;
                location / {{ return 200 "$stores_api_client"; }}
            }}
        }}
        """
    )
    nginx = subprocess.Popen([nginx_bin, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"])
    try:
        wait_for_port(port, 10, nginx)
        session = requests.Session()
        for address in sample_ipv6_addresses():
            expected = ":".join(f"{group:x}" for group in groups(address)[:4])
            if address.ipv4_mapped:
                expected = str(address.ipv4_mapped)
            got = session.get(f"http://127.0.0.1:{port}/", headers={"X-Real-IP": str(address)}).text
            assert got == expected, (str(address), got)
        assert session.get(f"http://127.0.0.1:{port}/", headers={"X-Real-IP": "203.0.113.9"}).text == "203.0.113.9"
    finally:
        nginx.terminate()
        nginx.wait(10)
