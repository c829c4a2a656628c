"""Private PostgreSQL and Redis servers that a test may stop and start again.

The outage tests must not stop the machine's shared servers (other tests and
processes use them), so each starts its own on a free port, in a temporary
folder, from the same installed binaries.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import time

import redis

from tests.support.live_server import free_port


def _postgres_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(args):
    """PostgreSQL refuses to run as root; run its tools as the postgres user when we are root."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, check=True, capture_output=True, text=True)


class PrivatePostgres:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pg-outage-")
        self.data = os.path.join(self.dir, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def available():
        return bool(_postgres_bin("initdb") and _postgres_bin("pg_ctl"))

    def __enter__(self):
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        _as_postgres([_postgres_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres"])
        self.start()
        return self

    def start(self):
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(
            [
                _postgres_bin("pg_ctl"),
                "-D",
                self.data,
                "-o",
                options,
                "-l",
                os.path.join(self.dir, "log"),
                "-w",
                "start",
            ]
        )

    def stop(self):
        # "fast": what a crash or `systemctl stop postgresql` looks like to clients:
        # open connections are cut, new ones refused.
        _as_postgres([_postgres_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"])

    def __exit__(self, *exc):
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A Redis with an append-only file, so a restart keeps its revocations,
    as a production Redis holding a blocklist must."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-outage-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    @staticmethod
    def available():
        return shutil.which("redis-server") is not None

    def start(self):
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def wipe(self):
        """Forget everything on disk: the next start is an empty Redis."""
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
