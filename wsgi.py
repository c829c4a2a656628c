"""The WSGI entry point uWSGI loads (uwsgi.ini: `module = wsgi:application`).

`app` is what `create_app()` builds (with `lazy-apps`, once per worker, after
the fork: nothing opened before it is shared). `application` is that app with
two things the server has to supply.

1. The path behind Nginx. deploy/nginx.conf passes PATH_INFO exactly as the
client encoded it (and says so with STORES_API_PATH_INFO_ENCODED=1), because
Nginx's decoded $uri is normalised as well: `drafts%2F..%2Fbob-widget` became
`bob-widget`, and `a%2F%2Fb` became `a/b`. Decoding it here once, with no
normalisation, gives the app the same name uWSGI's own HTTP parser gives it
for `make run` and Heroku.

2. Request bodies sent with `Transfer-Encoding: chunked` (no Content-Length),
as streaming HTTP clients do. Why here and not in the app: WSGI has no standard way to read a body of
unknown length. Werkzeug reads nothing from a request without Content-Length
unless the server sets `wsgi.input_terminated`, which uWSGI 2.0 does not; so
the JSON of a chunked request looked empty and the app answered 400 "not
valid JSON". uWSGI's HTTP router passes such a body on raw (uwsgi.ini's
`http-chunked-input`), and uWSGI offers `uwsgi.chunked_read()` to decode it.
This wrapper decodes it, up to the app's MAX_CONTENT_LENGTH plus one chunk,
and hands the app an ordinary body with a Content-Length, so the app's own
rules (413 above the limit, 400 for bad JSON, 415 for other types) apply
unchanged.

Behind Nginx this part does nothing: Nginx reads a chunked body whole and sends it
with its length (deploy/nginx.conf). Outside uWSGI (`flask run`, tests with
the test client) there is no `uwsgi` module and the app is served as is.
"""

from __future__ import annotations

import io
import json
from urllib.parse import unquote_to_bytes

from app import create_app

try:  # only importable inside a uWSGI worker
    import uwsgi
except ImportError:  # pragma: no cover - outside uWSGI
    uwsgi = None

app = create_app()

# Seconds to wait for each chunk before giving up on the client (a client
# trickling its body holds a worker, so not long).
CHUNK_TIMEOUT = 5
# How much of a too-large chunked body is read and thrown away before the 413.
DRAIN_LIMIT = 1024 * 1024


def _bad_request(start_response):
    body = json.dumps({"error": "bad_request", "message": "The chunked request body could not be read."}).encode()
    start_response(
        "400 BAD REQUEST",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )
    return [body]


def _is_chunked_without_length(environ) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH")


def application(environ, start_response):
    if environ.pop("STORES_API_PATH_INFO_ENCODED", None) == "1":
        # WSGI strings are bytes decoded as latin-1 (PEP 3333); Werkzeug turns
        # them into UTF-8 text. unquote_to_bytes decodes %XX once and leaves
        # "." and ".." segments and doubled slashes as they are.
        environ["PATH_INFO"] = unquote_to_bytes(environ.get("PATH_INFO", "")).decode("latin-1")
    if uwsgi is not None and _is_chunked_without_length(environ):
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        if environ.get("REQUEST_METHOD") == "PUT" and environ.get("PATH_INFO", "").endswith("/image"):
            # The image route alone takes larger bodies (resources/image.py).
            limit = max(limit, app.config["IMAGE_MAX_BYTES"] + 64 * 1024)
        body = bytearray()
        try:
            # Stop once past the limit: the app then refuses it with its 413,
            # without this process reading the rest of a huge body.
            while not limit or len(body) <= limit:
                chunk = uwsgi.chunked_read(CHUNK_TIMEOUT)
                if not chunk:
                    break
                body += chunk
            else:
                # Over the limit. Read on (discarding) up to DRAIN_LIMIT more,
                # so that a body only somewhat too large gets its 413 cleanly:
                # closing with the client's data unread makes the kernel reset
                # the connection, and the client may lose the answer.
                drained = 0
                while drained < DRAIN_LIMIT:
                    chunk = uwsgi.chunked_read(CHUNK_TIMEOUT)
                    if not chunk:
                        break
                    drained += len(chunk)
        except OSError:  # malformed chunk framing, or the client went quiet
            return _bad_request(start_response)
        environ["wsgi.input"] = io.BytesIO(bytes(body))
        environ["CONTENT_LENGTH"] = str(len(body))
        # The body is now an ordinary one with a length; Werkzeug ignores
        # Content-Length while this header says "chunked".
        del environ["HTTP_TRANSFER_ENCODING"]
    return app(environ, start_response)
