"""The front door's cost: the real app behind the relay (front/relay.py:
`uwsgi --ini uwsgi.ini`, as `make run` and Heroku serve it) against
the same app on a plain `--http-socket` (the fastest way uWSGI serves HTTP,
and the baseline), with keep-alive and without. Besides requests a second,
the CPU time the server's processes spent per request (read from /proc, so
it moves less than throughput with what else the machine does), and the
relay's share of it.

Usage: `.venv/bin/python bench/front_door.py` (`make bench` runs it). Writes the
"Front door" section of bench/RESULTS.md; wrk's reports go to bench/out/.
Settings: BENCH_DURATION (seconds per run, default 10), BENCH_WARMUP
(default 2), BENCH_PORT (default 20100; uses the next one too).

Goal (issue: the front door): the relay with keep-alive at 0.9x or more of
the plain http-socket on GET /item/<name>.
"""

import os
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import seed  # noqa: E402
from report import write_section  # noqa: E402
from uwsgi_server import PROJECT_DIR, UwsgiServer, migrate  # noqa: E402
from wrk_runner import CONNECTIONS, THREADS, run_wrk  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
RESULTS = BENCH_DIR / "RESULTS.md"
START, END = "<!-- front door: start (bench/front_door.py) -->", "<!-- front door: end -->"
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
PORT = int(os.environ.get("BENCH_PORT", "20100"))


def app_env(db_path, database_url=None):
    """The production settings the bench servers run with, on SQLite at
    `db_path` (or on `database_url`)."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith(("UWSGI_", "ARGON2_"))}
    env.update(
        APP_ENV="production",
        JWT_SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=database_url or f"sqlite:///{db_path}",
        LOGIN_RATE_LIMIT="1000000 per minute",
        REGISTER_RATE_LIMIT="1000000 per minute",
        JWT_ACCESS_TOKEN_EXPIRES="3600",
        # The webhook mule is not what is measured here.
        WEBHOOK_WORKER_EXTERNAL="1",
    )
    return env


def cpu_seconds(group):
    """CPU seconds used so far by each process of a process group, by pid."""
    used = {}
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def relay_pid(server):
    found = re.search(r"spawned uWSGI mule 1 \(pid: (\d+)\)", server.log_path.read_text())
    return int(found.group(1)) if found else None


def measure(server, headers):
    url = f"{server.base_url}/item/chair"
    run_wrk(url, WARMUP, headers)
    group = server.process.pid
    before = cpu_seconds(group)
    result = run_wrk(url, DURATION, headers)
    after = cpu_seconds(group)
    used = {pid: after[pid] - before.get(pid, 0) for pid in after}
    result.cpu_us = sum(used.values()) / result.requests * 1e6
    relay = relay_pid(server)
    result.relay_us = used.get(relay, 0) / result.requests * 1e6 if relay else None
    return result


def main():
    OUT_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="stores-front-"))
    env = app_env(workdir / "front.db")
    migrate(env)
    servers = {
        "relay": UwsgiServer("front-relay", PROJECT_DIR, PORT, env, OUT_DIR / "uwsgi-front-relay.log"),
        "http-socket": UwsgiServer(
            "front-http-socket",
            PROJECT_DIR,
            PORT + 1,
            env,
            OUT_DIR / "uwsgi-front-http-socket.log",
            extra_args=["--http-socket", f"127.0.0.1:{PORT + 1}"],
            section="app",
        ),
    }
    results = {}
    try:
        for server in servers.values():
            server.start()
        client = seed.ApiClient(servers["relay"].base_url)
        client.register_and_login()
        store_id = client.create_store("front-shop")
        client.create_item("chair", 12.99, store_id)
        auth = f"Authorization: Bearer {client.access_token}"
        for name, server in servers.items():
            for keep_alive in (True, False):
                headers = [auth] if keep_alive else [auth, "Connection: close"]
                print(f"{name}, keep-alive {'on' if keep_alive else 'off'}", flush=True)
                results[name, keep_alive] = measure(server, headers)
    finally:
        for server in servers.values():
            server.stop()
    baseline = max(results["http-socket", True].requests_per_second, results["http-socket", False].requests_per_second)
    lines = [
        START,
        "## Front door (bench/front_door.py)",
        "",
        f"GET /item/chair with a token, wrk {THREADS} threads x {CONNECTIONS} connections, "
        f"{DURATION} s after {WARMUP} s of warm-up, 2 workers, SQLite; written {time.strftime('%Y-%m-%d %H:%M')}.",
        "The baseline is the same app on a plain `--http-socket` (its faster run).",
        "",
        "| front | keep-alive | req/s | p50 ms | p99 ms | non-2xx | wrk socket errors | vs http-socket "
        "| server CPU µs/request | of it, the relay |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, keep_alive), result in results.items():
        lines.append(
            f"| {name} | {'on' if keep_alive else 'off'} | {result.requests_per_second:,.0f} | "
            f"{result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.non_2xx} | {result.socket_error_total} | "
            f"{result.requests_per_second / baseline:.2f}x | {result.cpu_us:.0f} | "
            f"{'-' if result.relay_us is None else f'{result.relay_us:.0f}'} |"
        )
    ratio = results["relay", True].requests_per_second / baseline
    lines += [
        "",
        "wrk counts a connection the server closes after its answer (no keep-alive) as a socket",
        "error and opens another; no request is lost to them (non-2xx counts the failed answers).",
        "",
        f"Goal: the relay with keep-alive at 0.9x or more: {ratio:.2f}x.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    write_section(RESULTS, START, END, section)


if __name__ == "__main__":
    main()
