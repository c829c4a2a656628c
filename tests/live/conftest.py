"""Fixtures for the tests that start real servers (everything in tests/live/),
and for the end-to-end deployment tests among them: the app deployed as users do.

Real PostgreSQL (database `deploy_e2e`), real Redis (TEST_REDIS_URL), uWSGI started
from the project's uwsgi.ini, the project's Nginx config (deploy/nginx.conf,
rendered by nginx_harness.py), newman running the Postman collection, honcho
running the Procfile.

A missing tool or server skips these tests off CI, with the reason, and
fails them under CI=true (tests/support/services.py's rule), so CI can never pass
without having run them. `bash deploy/install-tools.sh` installs Nginx and
newman.

Every process a fixture starts runs in its own process group and is stopped
in the fixture's finalizer, pass or fail.
"""

from __future__ import annotations

import atexit
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

import pytest
import requests

from tests.support import services
from tests.support.nginx_harness import NginxServer, find_nginx, free_port, wait_for_port
from tests.support.uwsgi_client import uwsgi_request

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin: uwsgi, flask, honcho
NEWMAN = ROOT / "postman" / "node_modules" / ".bin" / "newman"
COLLECTION = ROOT / "postman" / "stores-api.postman_collection.json"
ENVIRONMENT = ROOT / "postman" / "local.postman_environment.json"

# Redis keys of this run carry its prefix (services.REDIS_KEY_PREFIX).
E2E_REDIS_URL = services.REDIS_URL

# One secret for the whole session: instances that share a database must
# share it too, or they could not read each other's tokens.
JWT_SECRET = "e2e-" + secrets.token_hex(32)

ADMIN_USERNAME = "e2e_admin"
ADMIN_PASSWORD = "e2e-admin-password"

# Settings a developer's shell may carry that would change what the tests run.
_SCRUBBED = (
    "PORT",
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "APP_ENV",
    "WEB_CONCURRENCY",
    "LOGIN_RATE_LIMIT",
    "MAX_CONTENT_LENGTH",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "JWT_ACCESS_TOKEN_EXPIRES",
    "JWT_REFRESH_TOKEN_EXPIRES",
    "TRUSTED_PROXY_COUNT",
    "REDIS_TLS_VERIFY",
)


# What the servers write besides their databases (webhook queues, uploaded
# images) goes here, never to the checkout's instance/ folder; removed when the
# run ends.
SCRATCH = Path(tempfile.mkdtemp(prefix="stores-live-"))
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


def app_env(database_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment a production deployment gives the app (the systemd
    unit's env file, or Heroku's config vars), for a test. Image storage, and
    (without Redis) the webhook queue's SQLite file, are in a folder of this
    environment's own, shared by the processes that share the environment, as
    they would share the instance folder."""
    scratch = Path(tempfile.mkdtemp(dir=SCRATCH))
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("UWSGI_")}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": JWT_SECRET,
            # The tests log in far more often than a person; the limiter itself
            # is tested elsewhere.
            "LOGIN_RATE_LIMIT": "100000 per minute",
            "LOGIN_USERNAME_FAILURE_LIMIT": "100000 per minute",
            "REGISTER_RATE_LIMIT": "100000 per minute",
            "REDIS_KEY_PREFIX": services.REDIS_KEY_PREFIX,
            "WEBHOOK_QUEUE_PATH": str(scratch / "webhooks-queue.db"),
            "IMAGE_STORAGE": f"file://{scratch / 'images'}",
            "RUNTIME_DIR": str(scratch),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # Servers load the bytecode the install compiled and write none
            # (tests/live/test_bytecode.py would not see a missing one).
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def flask_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`flask --app app ARGS`, as an operator types it on the server."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


def run_newman(newman_bin, collection, tmp_path, label, env_vars, *options):
    """Run a Postman collection with newman (the local environment file, the
    given variables and options), print its counts, and assert that every
    request and assertion passed. Returns newman's run statistics."""
    report = tmp_path / f"newman-{label}.json"
    args = [str(newman_bin), "run", str(collection), "-e", str(ENVIRONMENT)]
    for key, value in env_vars.items():
        args += ["--env-var", f"{key}={value}"]
    args += [
        *options,
        "--reporters",
        "cli,json",
        "--reporter-json-export",
        str(report),
        "--color",
        "off",
        "--disable-unicode",
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    run = json.loads(report.read_text())["run"]
    stats = run["stats"]
    failures = [
        f"{f['source'].get('name')}: {f['error'].get('test') or ''} {f['error']['message']}" for f in run["failures"]
    ]
    print(
        f"newman ({label}): {stats['requests']['total']} requests ({stats['requests']['failed']} failed), "
        f"{stats['assertions']['total']} assertions ({stats['assertions']['failed']} failed), "
        f"exit {result.returncode}"
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert failures == []
    return stats


def stop_process_group(proc: subprocess.Popen | None, sig: int = signal.SIGINT, timeout: float = 15) -> None:
    """Stop a process started with start_new_session=True, and anything it left."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their master
    except ProcessLookupError:
        pass
    proc.wait()


# ------------------------------------------------------------------ tools ----


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    path = find_nginx()
    if path is None:
        services.unavailable("nginx is not installed (bash deploy/install-tools.sh installs it)")
    return path


@pytest.fixture(scope="session")
def newman_bin() -> Path:
    if not NEWMAN.exists():
        services.unavailable(f"newman is not installed at {NEWMAN} (bash deploy/install-tools.sh installs it)")
    return NEWMAN


@pytest.fixture(scope="session")
def honcho_bin() -> Path:
    path = BIN / "honcho"
    if not path.exists():
        services.unavailable(f"honcho is not installed in {BIN} (it is in requirements-dev.txt)")
    return path


# --------------------------------------------------------------- services ----


@pytest.fixture(scope="session")
def e2e_database_url() -> str:
    """The PostgreSQL database the deployment tests own: a scratch database of
    this run (its name carries the run id), dropped at the end."""
    return services.scratch_database("deploy_e2e")


@pytest.fixture
def empty_database(e2e_database_url) -> str:
    """The e2e database with an empty public schema (no tables yet)."""
    services.reset_postgres(e2e_database_url)
    return e2e_database_url


# ------------------------------------------------------------------ uWSGI ----


class UwsgiInstance:
    """`uwsgi --ini uwsgi.ini:nginx`, as the systemd unit runs it: only a
    uwsgi-protocol socket (UWSGI_SOCKET, here on 127.0.0.1), plus a stats
    socket that counts the requests each instance served."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str):
        self.port = free_port()
        self.stats_port = free_port(exclude={self.port})
        self.env = {**env, "UWSGI_SOCKET": f"127.0.0.1:{self.port}"}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> UwsgiInstance:
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "uwsgi"), "--ini", "uwsgi.ini:nginx", "--stats", f"127.0.0.1:{self.stats_port}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port(self.port, timeout, self.proc)
            # The socket is open before the (lazy) workers have loaded the app.
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if uwsgi_request(self.port, "GET", "/health/ready", timeout=5).status == 200:
                        return self
                except OSError:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"uWSGI on {self.port} not ready:\n{self.log()}")
                time.sleep(0.1)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        # SIGINT: uWSGI's immediate shutdown whatever uwsgi.ini says about SIGTERM.
        stop_process_group(self.proc, signal.SIGINT)

    def served(self) -> int:
        """Requests this instance's workers have answered so far."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as s:
            data = b"".join(iter(lambda: s.recv(65536), b""))
        return sum(worker["requests"] for worker in json.loads(data)["workers"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Deployment:
    """What the `deployment` fixture gives a test: the app's environment, the
    uWSGI instances and the Nginx in front of them."""

    def __init__(self, env, instances, nginx):
        self.env, self.instances, self.nginx = env, instances, nginx

    @property
    def url(self) -> str:
        return self.nginx.base_url

    def session(self):
        """A requests session that trusts the test certificate (and ignores
        REQUESTS_CA_BUNDLE and proxy settings from the environment)."""
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.nginx.cert)
        return s


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, nginx_bin, e2e_database_url):
    """Two uWSGI instances sharing PostgreSQL and Redis, behind one Nginx
    upstream, on a freshly migrated database.

    Module-scoped: the Postman run and the scale-out checks share it.
    """
    database_url = e2e_database_url
    services.reset_postgres(database_url)
    services.fresh_redis(E2E_REDIS_URL)
    env = app_env(database_url, E2E_REDIS_URL)
    flask_cli(env, "db", "upgrade")

    logs = tmp_path_factory.mktemp("deployment")
    instances = [UwsgiInstance(env, logs, "uwsgi-a"), UwsgiInstance(env, logs, "uwsgi-b")]
    nginx = NginxServer([f"127.0.0.1:{i.port}" for i in instances], prefix=logs / "nginx")
    try:
        for instance in instances:
            instance.start()
        nginx.start()
        yield Deployment(env=env, instances=instances, nginx=nginx)
    finally:
        nginx.stop()
        for instance in instances:
            instance.stop()
