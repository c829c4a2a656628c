"""Graceful stop: SIGTERM to the uWSGI master loses no request it had accepted.

systemd (KillMode=mixed) and `kill PID` stop uWSGI with SIGTERM to the master.
The test gives most workers a slow-ish request (a login: argon2
takes its time), checks in the kernel's socket table that uWSGI has accepted
all of them (none waits in the listen queue), sends SIGTERM, and requires a
complete 200 response with tokens for every one.

The server runs with `uwsgi --ini uwsgi.ini` and WEB_CONCURRENCY=10: the
project's settings, with enough worker processes that 8 requests are in
flight at once (with the default 2 only two would be).
"""

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.live.conftest import BIN, ROOT, app_env, flask_cli, stop_process_group
from tests.support.live_server import uwsgi_workers
from tests.support.nginx_harness import free_port, wait_for_port

pytestmark = pytest.mark.live

# Single-threaded workers, as in production (threads = 1 in uwsgi.ini).
# (With several threads per worker, uWSGI 2.0's graceful stop sometimes waits
# out worker-reload-mercy for threads blocked in accept().)
PROCESSES = 10
# Fewer requests than workers: a worker that is a moment late back in
# accept() must not leave a request waiting in the listen queue.
IN_FLIGHT = 8
TCP_ESTABLISHED, TCP_LISTEN = "01", "0A"


def socket_table(port):
    """(connections the server side holds on `port`, length of its accept queue),
    from /proc/net/tcp{,6}. A connection still in the accept queue counts in both."""
    established, queued = 0, 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port != port:
                continue
            if fields[3] == TCP_ESTABLISHED:
                established += 1
            elif fields[3] == TCP_LISTEN:
                queued += int(fields[4].split(":")[1], 16)  # rx_queue of a listener = accept backlog
    return established, queued


def all_accepted(port, count):
    """uWSGI holds `count` connections and none waits in its listen queue."""
    held, queued = socket_table(port)
    return held >= count and queued == 0


def workers_in_request(stats_port):
    """How many workers are inside a request, from uWSGI's stats server."""
    return sum(1 for worker in uwsgi_workers(stats_port) if any(core["in_request"] for core in worker["cores"]))


def test_sigterm_finishes_every_accepted_request(empty_database, tmp_path):
    port, stats_port = free_port(), free_port()
    env = app_env(
        empty_database,
        PORT=str(port),
        WEB_CONCURRENCY=str(PROCESSES),
        # Costlier hashing than the default makes each login take
        # ~0.15 s of CPU, so all of them are still running at SIGTERM.
        ARGON2_TIME_COST="12",
    )
    flask_cli(env, "db", "upgrade")
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "uwsgi.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(BIN / "uwsgi"), "--ini", "uwsgi.ini", "--stats", f"127.0.0.1:{stats_port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    http = requests.Session()
    http.trust_env = False
    try:
        wait_for_port(port, 30, server)
        # Every worker has loaded the app (lazy-apps): a SIGTERM that reaches
        # uWSGI 2.0 while workers are still loading leaves those workers
        # running, and the master waiting for them (a uWSGI bug this test is
        # not about).
        deadline = time.monotonic() + 30
        while log_path.read_text().count("WSGI app 0 (mountpoint='') ready") < PROCESSES:
            assert time.monotonic() < deadline, "not every uWSGI worker became ready"
            time.sleep(0.05)
        credentials = {"username": "graceful_user", "password": "graceful-password"}
        assert http.post(f"{url}/register", json=credentials, timeout=30).status_code == 201

        def login(_):
            # A new connection per request, as separate clients would open.
            try:
                response = requests.post(f"{url}/login", json=credentials, timeout=30)
                ok = response.status_code == 200 and "refresh_token" in response.json()
                return ("ok" if ok else f"{response.status_code} {response.text[:80]}"), time.monotonic()
            except (requests.ConnectionError, ValueError) as e:
                return f"{type(e).__name__}: {e}", time.monotonic()

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [pool.submit(login, i) for i in range(IN_FLIGHT)]
            # Wait until uWSGI has accepted all of them: every connection is
            # established, none is left in the listen queue, and a worker is
            # inside each request (uWSGI 2.0 can still drop a connection a
            # worker has taken from the queue but not begun to read).
            deadline = time.monotonic() + 10
            while not (all_accepted(port, IN_FLIGHT) and workers_in_request(stats_port) >= IN_FLIGHT):
                assert time.monotonic() < deadline, f"not all accepted: {socket_table(port)}"
                time.sleep(0.005)
            signalled_at = time.monotonic()
            server.send_signal(signal.SIGTERM)
            results = [future.result() for future in futures]

        server.wait(timeout=30)
        stopped_after = time.monotonic() - signalled_at
        outcomes = [outcome for outcome, _ in results]
        finished_after_signal = sum(1 for _, done in results if done > signalled_at)
        print(
            f"graceful stop: {IN_FLIGHT} accepted logins in flight at SIGTERM, "
            f"{outcomes.count('ok')} answered 200 ({finished_after_signal} of them after the signal), "
            f"master exited {server.returncode} after {stopped_after:.2f}s"
        )

        lost = [outcome for outcome in outcomes if outcome != "ok"]
        assert not lost, (
            f"{len(lost)} of {IN_FLIGHT} accepted requests got no complete response, e.g. {lost[0]!r}. "
            "uWSGI 2.0 stops gracefully on SIGTERM only with uwsgi.ini's "
            "`hook-master-start = unix_signal:15 gracefully_kill_them_all` (next to die-on-term)."
        )
        # They were really in flight: they all finished after the signal.
        assert finished_after_signal == IN_FLIGHT
        assert server.returncode == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=2)
    finally:
        stop_process_group(server)
