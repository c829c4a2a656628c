"""One structured log line per request, and the request id that ties a
client's report to the server log.

Each request gets an id (the client's `X-Request-ID` when it is a sane token,
else a new one), echoed in the `X-Request-ID` response header and in 500
bodies. The line holds method, path, status, duration and id: never headers,
bodies or query strings, so passwords and tokens cannot reach the log.
"""

import logging
import os
import re
import sys
import time

import orjson
from flask import g, request

log = logging.getLogger("stores_api.requests")
SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The stderr handler configure_logging installed, while it is the only place
# the request lines go: they are then written to its stream straight away
# (what it would do with them, without a LogRecord; bench/ shows the gain).
_stderr_handler = None


def configure_logging(app):
    """Log the app's lines to stderr (uWSGI's log), once per process."""
    global _stderr_handler
    root = logging.getLogger("stores_api")
    if not root.handlers and not app.testing:
        handler = _stderr_handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def start_request():
    incoming = request.headers.get("X-Request-ID", "")
    # 32 random hex digits, as uuid4().hex gave, without building a UUID object.
    g.request_id = incoming if incoming and SANE_ID.fullmatch(incoming) else os.urandom(16).hex()
    g.request_started = time.perf_counter()


def finish_request(response):
    if "request_id" not in g:  # an earlier before_request hook failed
        start_request()
    response.headers["X-Request-ID"] = g.request_id
    # Browsers must never guess a JSON body's type.
    response.headers["X-Content-Type-Options"] = "nosniff"
    write_line(
        orjson.dumps(
            {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.request_started) * 1000, 2),
                "request_id": g.request_id,
                "remote_addr": request.remote_addr,
            }
        ).decode()
    )
    return response


def write_line(line):
    handler = _stderr_handler
    if handler is not None and not log.handlers and log.parent.handlers == [handler] and log.isEnabledFor(logging.INFO):
        with handler.lock:
            handler.stream.write(line + "\n")
            handler.stream.flush()
    else:
        log.info(line)


def register_request_logging(app):
    """Register before any other hook, so every request has its id."""
    configure_logging(app)
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)
    app.after_request(finish_request)
