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

2. The request body's faults that the relay found. On `make run` and
Heroku, front/relay.py waits for each whole body (decoding a chunked one)
before a worker sees the request; a body late past its deadline, with
broken chunked framing or with framing that cannot be trusted, arrives
here as an empty body marked STORES_API_BODY_ERROR, and is answered 408 or
400 with `Connection: close`.
Behind Nginx the body is whole (and de-chunked) already.

3. Answers that may carry no body (204, 304) end their connection. uWSGI's
HTTP router keeps a connection alive by sending an answer without a length
chunked (uwsgi.ini's `http-auto-chunked`), whatever its status: a 304 or 204
would be followed by a `0` chunk, which the client reads as the start of its
next answer. With `Connection: close` the router sends the answer as it is
and closes; the client's next request opens a new connection.

Outside uWSGI (`flask run`, the test client) there is no `uwsgi` module and
the app is served as is.
"""

from __future__ import annotations

import gc
import json
from urllib.parse import unquote_to_bytes

from app import create_app

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

# The relay's marks (STORES_API_BODY_ERROR) and their answers.
BODY_ERRORS = {
    "timeout": ("408 REQUEST TIMEOUT", "request_timeout", "The request body did not arrive in time."),
    "chunking": ("400 BAD REQUEST", "bad_request", "The chunked request body could not be read."),
    "framing": (
        "400 BAD REQUEST",
        "bad_request",
        "The request's length cannot be read: send a numeric Content-Length, or Transfer-Encoding: chunked alone.",
    ),
}


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


BODYLESS_STATUSES = ("204", "304")


def closing_bodyless_answers(start_response):
    """start_response, adding `Connection: close` to a 204 or 304 (see 3. above)."""

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
    fault = BODY_ERRORS.get(environ.pop("STORES_API_BODY_ERROR", None))
    if fault:
        return _error(start_response, *fault)
    return app(environ, start_response)
