"""The WSGI entry point uWSGI loads (uwsgi.ini: `module = wsgi:application`).

`app` is what `create_app()` builds (with `lazy-apps`, once per worker, after
the fork: nothing opened before it is shared). `application` is that app with
three things the server has to supply.

1. The path behind Nginx. Nginx's decoded `$uri` is also normalised
(`drafts%2F..%2Fbob-widget` would arrive as `bob-widget`, `a%2F%2Fb` as
`a/b`), so deploy/nginx.conf passes PATH_INFO as the client encoded it and
says so with STORES_API_PATH_INFO_ENCODED=1. Decoding it here once, with no
normalisation, gives the app the same name uWSGI's own HTTP parser gives it
for `make run` and Heroku.

2. A deadline for the request body. uWSGI's HTTP router (`make run`,
Heroku) hands a worker a request once its headers are in, and the body
follows at the client's pace: a client trickling a byte every 2 seconds
would hold the worker until harakiri (30 s). So the body is read here, as
it arrives, and a body that is not all in by REQUEST_BODY_TIMEOUT seconds
(plus one second per REQUEST_BODY_MIN_RATE bytes it holds) gets 408
request_timeout. The worker is held that long at most, not free: only a
front that buffers whole bodies (Nginx, deploy/nginx.conf) frees it
entirely. Behind Nginx the body is already whole, and is read at once.

3. Request bodies sent with `Transfer-Encoding: chunked` (no Content-Length),
as streaming HTTP clients send them. WSGI has no standard way to read a body
of unknown length: Werkzeug reads nothing without a Content-Length unless the
server sets `wsgi.input_terminated`, which uWSGI 2.0 does not. uWSGI's HTTP
router passes such a body on raw (uwsgi.ini's `http-chunked-input`), and
`uwsgi.chunked_read()` decodes it. This wrapper reads it, up to the largest
body the route takes plus one chunk, and hands the app an ordinary body with
a Content-Length, so the app's own rules (413 above the limit, 400 for bad
JSON, 415 for other types) apply unchanged.

4. Answers that may carry no body (204, 304) end their connection. uWSGI's
HTTP router keeps a connection alive by sending an answer without a length
chunked (uwsgi.ini's `http-auto-chunked`), whatever its status: a 304 or 204
would be followed by a `0` chunk, which the client reads as the start of its
next answer. With `Connection: close` the router sends the answer as it is
and closes; the client's next request opens a new connection.

Outside uWSGI (`flask run`, the test client) there is no `uwsgi` module and
the app is served as is.
"""

from __future__ import annotations

import fcntl
import gc
import io
import json
import math
import struct
import termios
import time
from urllib.parse import unquote_to_bytes

from werkzeug.exceptions import HTTPException

from app import create_app
from images.resource import ItemImage, largest_upload_body

try:  # only importable inside a uWSGI worker
    import uwsgi
except ImportError:  # pragma: no cover - outside uWSGI
    uwsgi = None

app = create_app()
# What the worker has built so far (the app, its libraries) lives as long as
# the worker: out of the collector's sight, so that a full collection, which a
# large answer's thousands of dicts set off, walks only what requests made.
# And young objects are collected in larger batches: a request's objects are
# freed by their reference counts, cycles are rare (bench/RESULTS.md,
# "Filters at scale": GET /stores of 1 MB, p99 85 -> 45 ms).
gc.freeze()
gc.set_threshold(20_000, 50, 100)

# Seconds to wait for each chunk of a chunked body (within the body's deadline).
CHUNK_TIMEOUT = 5
# How much of a too-large chunked body is read and thrown away before the 413.
DRAIN_LIMIT = 1024 * 1024


class BodyTimeout(Exception):
    """The body did not arrive by its deadline."""


class BadChunking(Exception):
    """The chunked body's framing could not be read."""


def _error(start_response, status, error, message):
    body = json.dumps({"error": error, "message": message}).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
            # The rest of the body was never read: this connection is done.
            ("Connection", "close"),
        ],
    )
    return [body]


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


def body_deadline(length):
    """When a body of `length` bytes must be in: REQUEST_BODY_TIMEOUT seconds,
    plus one for every REQUEST_BODY_MIN_RATE bytes."""
    allowed = app.config["REQUEST_BODY_TIMEOUT"] + length / app.config["REQUEST_BODY_MIN_RATE"]
    return time.monotonic() + allowed


def _bytes_waiting(fd):
    """How many bytes the kernel holds for this socket (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def read_body(stream, length, deadline):
    """The body's `length` bytes, read as they arrive, or BodyTimeout.

    uWSGI's read(n) returns only once n bytes are in, so it is asked only for
    what the socket already holds; with nothing there, for one byte, which
    comes from what uWSGI read beside the headers, or waits at most uWSGI's
    socket-timeout. Between reads the deadline is checked."""
    body = bytearray()
    fd = uwsgi.connection_fd()
    while len(body) < length:
        if time.monotonic() > deadline:
            raise BodyTimeout
        wanted = min(length - len(body), _bytes_waiting(fd)) or 1
        try:
            chunk = stream.read(wanted)
        except OSError:  # uWSGI's socket-timeout passed with nothing sent
            raise BodyTimeout from None
        if not chunk:
            raise BodyTimeout  # the client went away
        body += chunk
    return bytes(body)


def read_chunked_body(limit, deadline):
    """A chunked body, decoded, up to `limit` bytes plus one chunk (the app
    then answers 413 without this process reading a huge body)."""
    body = bytearray()
    try:
        while not limit or len(body) <= limit:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BodyTimeout
            wait = max(1, min(CHUNK_TIMEOUT, math.ceil(left)))
            started = time.monotonic()
            try:
                chunk = uwsgi.chunked_read(wait)
            except OSError:
                # A wait that ran its course is a client gone quiet, not bad framing.
                if time.monotonic() - started >= wait - 0.1:
                    raise BodyTimeout from None
                raise
            if not chunk:
                return bytes(body)
            body += chunk
        # Over the limit. Read on (discarding) up to DRAIN_LIMIT more, so
        # that a body only somewhat too large gets its 413 cleanly: closing
        # with the client's data unread makes the kernel reset the
        # connection, and the client may lose the answer.
        drained = 0
        while drained < DRAIN_LIMIT and time.monotonic() < deadline:
            chunk = uwsgi.chunked_read(CHUNK_TIMEOUT)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:  # malformed chunk framing, or the client went quiet
        raise BadChunking from None
    return bytes(body)


BODYLESS_STATUSES = ("204", "304")


def closing_bodyless_answers(start_response):
    """start_response, adding `Connection: close` to a 204 or 304 (see 4. above)."""

    def start(status, headers, exc_info=None):
        if status[:3] in BODYLESS_STATUSES:
            headers = [*headers, ("Connection", "close")]
        return start_response(status, headers, exc_info)

    return start


def application(environ, start_response):
    if environ.pop("STORES_API_PATH_INFO_ENCODED", None) == "1":
        # WSGI strings are bytes decoded as latin-1 (PEP 3333); Werkzeug turns
        # them into UTF-8 text. unquote_to_bytes decodes %XX once and leaves
        # "." and ".." segments and doubled slashes as they are.
        environ["PATH_INFO"] = unquote_to_bytes(environ.get("PATH_INFO", "")).decode("latin-1")
    if uwsgi is None:
        return app(environ, start_response)
    start_response = closing_bodyless_answers(start_response)
    try:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH"):
            limit = body_limit(environ)
            body = read_chunked_body(limit, body_deadline(limit))
            # The body is now an ordinary one with a length; Werkzeug ignores
            # Content-Length while this header says "chunked".
            del environ["HTTP_TRANSFER_ENCODING"]
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if not 0 < length <= body_limit(environ):
                # Nothing to read, or more than the route takes: the app
                # answers (413) without reading it.
                return app(environ, start_response)
            body = read_body(environ["wsgi.input"], length, body_deadline(length))
    except BodyTimeout:
        return _error(
            start_response, "408 REQUEST TIMEOUT", "request_timeout", "The request body did not arrive in time."
        )
    except BadChunking:
        return _error(start_response, "400 BAD REQUEST", "bad_request", "The chunked request body could not be read.")
    except ValueError:  # a Content-Length that is no number: the app's own 400
        return app(environ, start_response)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return app(environ, start_response)
