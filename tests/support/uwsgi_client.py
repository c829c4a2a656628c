"""Talk to a uWSGI instance over its native uwsgi protocol, as Nginx does.

Behind Nginx, uWSGI listens on a uwsgi-protocol socket (UWSGI_SOCKET), not
HTTP. To ask one instance something directly (say, whether it refuses a
revoked token), a test must speak that protocol: a 4-byte header, the WSGI
environ as length-prefixed key/value pairs, then the body. uWSGI answers
with a plain HTTP/1.x response and closes the connection.

Spec: https://uwsgi-docs.readthedocs.io/en/latest/Protocol.html
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self):
        return json.loads(self.body)


def _pair(key: str, value: str) -> bytes:
    k, v = key.encode("latin-1"), value.encode("utf-8")
    return struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v


def uwsgi_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    unix_path: str | None = None,
    extra_environ: dict[str, str] | None = None,
) -> Response:
    """Send one request to the uwsgi socket at host:port (or at `unix_path`)
    and return its response. `extra_environ` adds raw variables to the
    packet, as only a client of this protocol can (uWSGI's own UWSGI_*)."""
    path_info, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": path,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": f"{host}:{port}",
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    environ.update(extra_environ or {})
    payload = b"".join(_pair(k, v) for k, v in environ.items())
    # modifier1 = 0 (a WSGI request), datasize = the environ's length, modifier2 = 0.
    packet = struct.pack("<BHB", 0, len(payload), 0) + payload + body

    if unix_path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(unix_path)
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    with sock:
        sock.sendall(packet)
        raw = b"".join(iter(lambda: sock.recv(65536), b""))

    head, sep, content = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete uwsgi response from {host}:{port}: {raw[:200]!r}")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Response(status, parsed, content)
