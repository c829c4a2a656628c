"""Start the real server (uWSGI with the project's uwsgi.ini) for tests that talk HTTP.

    with LiveServer(database_url=..., processes=2) as server:
        requests.get(server.url + "/health")

The server runs in its own process group and is always stopped on exit.
What it writes besides its database (the webhook queue of its mule, uploaded
images) goes to a temporary folder of its own, removed when it stops, never to
the checkout's `instance/`.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.support import services

# One signing key per test run, shared by every app (and server) it builds:
# apps on one database must read each other's tokens.
JWT_SECRET = secrets.token_hex(32)

ROOT = Path(__file__).resolve().parents[2]
UWSGI = Path(sys.executable).parent / "uwsgi"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uwsgi_workers(stats_port):
    """The workers as uWSGI's stats server (`--stats 127.0.0.1:PORT`) reports them."""
    with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as conn:
        data = b"".join(iter(lambda: conn.recv(65536), b""))
    return json.loads(data)["workers"]


def worker_requests(stats_port):
    """Requests served so far by each worker, by pid."""
    return {worker["pid"]: worker["requests"] for worker in uwsgi_workers(stats_port)}


def migrate(env):
    """Build the schema the way `make run` and Heroku's release phase do."""
    subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


class PortTaken(Exception):
    """uWSGI could not bind the port chosen for it."""


class LiveServer:
    def __init__(self, database_url, processes=2, redis_url=None, extra_env=None, args=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scratch = tempfile.mkdtemp(prefix=f"live-server-{self.port}-")
        self.env = {
            **os.environ,
            "APP_ENV": "development",
            "PORT": str(self.port),
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": JWT_SECRET,
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST": "64",
            "LOGIN_RATE_LIMIT": "100000 per minute",
            "LOGIN_USERNAME_FAILURE_LIMIT": "100000 per minute",
            "REGISTER_RATE_LIMIT": "100000 per minute",
            "WEB_CONCURRENCY": str(processes),
            "REDIS_KEY_PREFIX": services.REDIS_KEY_PREFIX,
            "WEBHOOK_QUEUE_PATH": os.path.join(self.scratch, "webhooks-queue.db"),
            "IMAGE_STORAGE": f"file://{self.scratch}/images",
            "RUNTIME_DIR": self.scratch,
            # Workers load the bytecode the install compiled and write none
            # (tests/live/test_bytecode.py would not see a missing one).
            "PYTHONDONTWRITEBYTECODE": "1",
            **(extra_env or {}),
        }
        self.env.pop("REDIS_URL", None)
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.args = list(args)
        self.process = None
        self.log_path = None

    def start(self, timeout=30, attempts=3):
        """Start and wait for /health. free_port's port is free when chosen, but
        any process's outgoing connection may take it before uWSGI binds it:
        then another port is tried."""
        migrate(self.env)
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == attempts - 1:
                    raise
                self.log.close()
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.env["PORT"] = str(self.port)

    def _start(self, timeout):
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"uwsgi-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(UWSGI), "--ini", "uwsgi.ini", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text()
                if f":{self.port}).\nbind(): Address already in use" in log:
                    raise PortTaken(self.port)
                raise RuntimeError(f"uWSGI exited early:\n{log}")
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uWSGI did not answer within {timeout}s:\n{self.log_path.read_text()}")

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process:
            self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
