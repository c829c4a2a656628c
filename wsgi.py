"""The WSGI entry point uWSGI loads (uwsgi.ini: `module = wsgi:application`).

`app` is what `create_app()` builds (with `lazy-apps`, once per worker, after
the fork: nothing opened before it is shared). `application` is that app with
two things the server has to supply.

1. The path behind Nginx. Nginx's decoded `$uri` is also normalised
(`drafts%2F..%2Fbob-widget` would arrive as `bob-widget`, `a%2F%2Fb` as
`a/b`), so deploy/nginx.conf passes PATH_INFO as the client encoded it and
says so with STORES_API_PATH_INFO_ENCODED=1. Decoding it here once, with no
normalisation, gives the app the same name uWSGI's own HTTP parser gives it
for `make run` and Heroku.

2. Request bodies sent with `Transfer-Encoding: chunked` (no Content-Length),
as streaming HTTP clients send them. WSGI has no standard way to read a body
of unknown length: Werkzeug reads nothing without a Content-Length unless the
server sets `wsgi.input_terminated`, which uWSGI 2.0 does not. uWSGI's HTTP
router passes such a body on raw (uwsgi.ini's `http-chunked-input`), and
`uwsgi.chunked_read()` decodes it. This wrapper reads it, up to the largest
body the route takes plus one chunk, and hands the app an ordinary body with
a Content-Length, so the app's own rules (413 above the limit, 400 for bad
JSON, 415 for other types) apply unchanged.

Behind Nginx part 2 does nothing: Nginx reads a chunked body whole and sends
it with its length. Outside uWSGI (`flask run`, the test client) there is no
`uwsgi` module and the app is served as is.
"""

from __future__ import annotations

import io
import json
from urllib.parse import unquote_to_bytes

from werkzeug.exceptions import HTTPException

from app import create_app
from images.resource import ItemImage, largest_upload_body

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


def body_limit(environ):
    """The largest body the request's route reads: the image upload's, or MAX_CONTENT_LENGTH."""
    try:
        endpoint, _ = app.url_map.bind_to_environ(environ).match()
    except HTTPException:
        endpoint = None
    view = app.view_functions.get(endpoint)
    if getattr(view, "view_class", None) is ItemImage and environ.get("REQUEST_METHOD") == "PUT":
        return largest_upload_body(app.config)
    return app.config.get("MAX_CONTENT_LENGTH") or 0


def application(environ, start_response):
    if environ.pop("STORES_API_PATH_INFO_ENCODED", None) == "1":
        # WSGI strings are bytes decoded as latin-1 (PEP 3333); Werkzeug turns
        # them into UTF-8 text. unquote_to_bytes decodes %XX once and leaves
        # "." and ".." segments and doubled slashes as they are.
        environ["PATH_INFO"] = unquote_to_bytes(environ.get("PATH_INFO", "")).decode("latin-1")
    if uwsgi is not None and _is_chunked_without_length(environ):
        limit = body_limit(environ)
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
