"""deploy/nginx.conf on its own: what Nginx itself answers, and what it passes on.

No database here. The errors Nginx makes itself (no uWSGI answering, body
too large, URI too long, unparsable request, plain HTTP) must be the API's
JSON envelope, and the WSGI environ Nginx sends over the uwsgi protocol must
carry the real client address, the scheme and the Host with its port. The
latter is read back from a tiny WSGI app that echoes its environ.
"""

import json
import socket
import subprocess
import textwrap

import pytest
import requests

from tests.e2e.conftest import BIN, stop_process_group
from tests.e2e.nginx_harness import NginxServer, free_port, wait_for_port

pytestmark = pytest.mark.live

# /status/<code> answers that status with the app's own JSON error; any other
# path echoes the environ's strings and the length of the body received.
ECHO_APP = textwrap.dedent('''
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
''')


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
        [str(BIN / "uwsgi"), "--socket", f"127.0.0.1:{port}",
         "--wsgi-file", str(folder / "echo.py"), "--master", "--processes", "1", "--disable-logging"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
    too_big = http.post(f"{nginx_without_backend.base_url}/register", data=b"x" * 65537,
                        headers={"Content-Type": "application/json"})
    assert_envelope(too_big, 413, "payload_too_large")
    # Exactly the limit passes Nginx (and meets the missing backend).
    at_limit = http.post(f"{nginx_without_backend.base_url}/register", data=b"x" * 65536,
                         headers={"Content-Type": "application/json"})
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
    assert response.headers["Location"] == "https://127.0.0.1/login?next=1"
    assert_envelope(response, 308, "https_required")


def test_environ_carries_client_address_scheme_and_host(nginx_with_echo):
    response = client(nginx_with_echo).get(
        f"{nginx_with_echo.base_url}/stores?page=2",
        # A client cannot pass itself off as another address.
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"})
    assert response.status_code == 200
    environ = response.json()
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert environ["HTTP_X_FORWARDED_PROTO"] == "https"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{nginx_with_echo.https_port}"
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/stores", "page=2")
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
    response = client(nginx_with_echo).post(f"{nginx_with_echo.base_url}/echo", data=body,
                                            headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200
    assert response.json()["body_length"] == len(body)
