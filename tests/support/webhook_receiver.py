"""A real HTTP receiver for webhook tests: a small threaded server on a free
local port that verifies every delivery with the `standardwebhooks` library.

    with Receiver(secret) as receiver:
        ... receiver.url ...
        receiver.wait_for(ids)            # every webhook-id in `ids` arrived, verified

It records each verified delivery's webhook-id and body, every request's
webhook-id (`attempt_ids`), counts failed verifications, can answer a given
status for the next N requests (`fail_next`), go down and come back on the
same port (`stop` / `start`), and answer slowly (`delay`). Until it knows the secret it answers 503.
"""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.live_server import free_port


class Receiver:
    def __init__(self, secret=None, port=None):
        self.secret = secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.lock = threading.Lock()
        self.received = []  # (webhook-id, parsed body) of each verified delivery
        self.attempt_ids = []  # the webhook-id of every request, whatever it was answered
        self.bad_signatures = 0
        self.failures_left = 0
        self.failure_status = 500
        self.delay = 0.0
        self.paths = Counter()
        self.redirect_to = None
        self.server = None

    # --- control ---------------------------------------------------------
    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.handle(self)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        # shutdown() waits for the loop's next poll: 50 ms, not the default 0.5 s.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def fail_next(self, count, status=500):
        with self.lock:
            self.failures_left, self.failure_status = count, status

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- what arrived ----------------------------------------------------
    def ids(self):
        with self.lock:
            return Counter(message_id for message_id, _ in self.received)

    def wait_for(self, expected_ids, timeout):
        """Wait until every id in `expected_ids` arrived; the seconds it took."""
        start = time.monotonic()
        expected = set(expected_ids)
        while time.monotonic() - start < timeout:
            if expected <= set(self.ids()):
                return time.monotonic() - start
            time.sleep(0.05)
        missing = expected - set(self.ids())
        raise AssertionError(f"{len(missing)} of {len(expected)} deliveries missing after {timeout}s")

    # --- one request -----------------------------------------------------
    def handle(self, request):
        length = int(request.headers.get("Content-Length", 0))
        body = request.rfile.read(length)
        with self.lock:
            self.paths[request.path] += 1
            self.attempt_ids.append(request.headers.get("webhook-id"))
        if self.delay:
            time.sleep(self.delay)
        if self.redirect_to:
            return self.answer(request, 302, {"Location": self.redirect_to})
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                return self.answer(request, self.failure_status)
        if not self.secret:
            # The test has not learnt the subscription's secret yet: the
            # sender is told to come back, as a receiver starting up would.
            return self.answer(request, 503)
        try:
            Webhook(self.secret).verify(body, dict(request.headers.items()))
        except WebhookVerificationError:
            with self.lock:
                self.bad_signatures += 1
            return self.answer(request, 400)
        with self.lock:
            self.received.append((request.headers["webhook-id"], json.loads(body)))
        self.answer(request, 204)

    @staticmethod
    def answer(request, status, headers=None):
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", "0")
        request.end_headers()
