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

2. The request's faults that the relay found. On `make run` and Heroku,
front/relay.py reads each whole request (decoding a chunked body) before a
worker sees it; a request whose body is late past its deadline, whose head
or framing cannot be read or trusted, or that carries more than one
X-Forwarded-For line behind a trusted proxy, or whose body would not fit in
what the relay may hold for all bodies at once, arrives here without its
body, marked STORES_API_REQUEST_ERROR, and is answered 408, 400 or 503 with
`Connection: close`. Behind Nginx the body is whole (and de-chunked) already.

Outside uWSGI (`flask run`, the test client) there is no `uwsgi` module and
the app is served as is.
"""

from __future__ import annotations

import gc
import json
import os
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
# And young objects are collected in larger batches than Python's 700: a
# request's objects are freed by their reference counts (docs/benchmarks.md,
# "Filters at scale": GET /stores of 1 MB, p99 80-90 ms before). Not much larger:
# every request leaves one small cycle behind (Werkzeug's URL matcher, 8
# objects), and what waits for the next collection stays in the worker's
# memory (at 20,000, the cycles of 2,500 requests: +1.7 MiB per worker).
gc.freeze()
gc.set_threshold(2_000, 50, 100)

# The relay's marks (STORES_API_REQUEST_ERROR) and their answers.
REQUEST_ERRORS = {
    "timeout": ("408 REQUEST TIMEOUT", "request_timeout", "The request body did not arrive in time."),
    "chunking": ("400 BAD REQUEST", "bad_request", "The chunked request body could not be read."),
    "framing": (
        "400 BAD REQUEST",
        "bad_request",
        "The request's length cannot be read: send a numeric Content-Length, or Transfer-Encoding: chunked alone.",
    ),
    "head": ("400 BAD REQUEST", "bad_request", "The request line or headers could not be read, or are too large."),
    "forwarded": ("400 BAD REQUEST", "bad_request", "Send at most one X-Forwarded-For header."),
    "busy": (
        "503 SERVICE UNAVAILABLE",
        "service_unavailable",
        "The server is receiving too many request bodies: try again in a moment.",
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
            ("X-Request-ID", os.urandom(16).hex()),
            # The rest of the body was never read: this connection is done.
            ("Connection", "close"),
            *([("Retry-After", "1")] if status.startswith("503") else []),
        ],
    )
    return [body]


def application(environ, start_response):
    if environ.pop("STORES_API_PATH_INFO_ENCODED", None) == "1":
        # WSGI strings are bytes decoded as latin-1 (PEP 3333); Werkzeug turns
        # them into UTF-8 text. unquote_to_bytes decodes %XX once and leaves
        # "." and ".." segments and doubled slashes as they are.
        environ["PATH_INFO"] = unquote_to_bytes(environ.get("PATH_INFO", "")).decode("latin-1")
    if uwsgi is None:
        return app(environ, start_response)
    fault = REQUEST_ERRORS.get(environ.pop("STORES_API_REQUEST_ERROR", None))
    if fault:
        return _error(start_response, *fault)
    return app(environ, start_response)
