"""The mixed run of `make bench`: normal readers beside a hostile client.

Readers: READERS clients, each from its own loopback address (127.0.0.10,
.11, ...), each sending GET /items (10 items) one after the other with a
short pause, like separate people. We record every reader request's latency
and report p50/p99.

Each scenario runs for BENCH_MIXED_SECONDS (default 15) and is one of:
- quiet: the readers alone;
- registration flood: FLOODERS threads from one address (127.0.0.200) POST
  /register with new names as fast as they can (argon2 at the production
  cost: ~30 ms of a worker's CPU each);
- slow headers: SLOW_CLIENTS connections from 127.0.0.201 that each send one
  header line every 3.5 s and never finish;
- slow bodies: SLOW_BODY_CLIENTS connections from 127.0.0.202 that each send
  a POST /login's headers whole, then its body a byte every 3.5 s, and
  reconnect when the server lets them go;
- image bombs: UPLOADERS threads of the store's owner (127.0.0.203; .204 for the next) PUT
  image bombs (tests/support/image_samples.py: tiny files that would decode
  to hundreds of MB or take seconds of CPU) one after the other, with the
  per-user upload limit lifted so that what is measured is their decoding;
- costly uploads: the same, with the small files that images/decoding.py
  accepts and that cost the most to process (bench/image_bombs.py: each
  just under its decode budget or scan limit, 0.2-0.5 s of CPU and up to
  ~180 MB in a worker), the worst an attacker can make a worker do.
For each scenario the uWSGI processes' peak resident memory is read
(VmHWM, reset through /proc/<pid>/clear_refs when the scenario starts), with
the workers uWSGI replaced meanwhile (reload-on-rss) and, for uploads, their
latency.
The hostile client starts HOSTILE_HEAD_START seconds before the readers, so
they measure the attack's steady state, not its first burst.

The client threads run on the same machine as the servers, so a hostile
client's own CPU (TLS handshakes, thousands of 429s a second) slows the
servers too: the figures overstate what a remote attacker would cost.

Two ways in, each with its own server:
- through deploy/nginx.conf (run by tests/support/nginx_harness.py on free local
  ports, with its documented worker_connections) in front of
  `uwsgi --ini uwsgi.ini:nginx` with 4 workers: the Linux-server deployment
  as docs/deploy-server.md sets it up;
- straight to `uwsgi --ini uwsgi.ini` (PORT set, 2 workers): `make run` and Heroku,
  where only the relay (front/relay.py) stands in front of the workers.

The goal: readers' p99 under attack within 2x of the quiet run. The figures
go to bench/RESULTS.md, between the "mixed run" markers (the rest of that
file is bench/run.py's). Only 127.0.0.1 is ever contacted; every count and
duration is bounded.

Usage: `.venv/bin/python bench/mixed.py` (`make bench` runs it after run.py).
`.venv/bin/python bench/mixed.py "image bombs"` runs the quiet run and the
scenarios named, prints their table and leaves bench/RESULTS.md alone.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))

from report import write_section  # noqa: E402

from tests.support import image_samples  # noqa: E402
from tests.support.nginx_harness import NginxServer, free_port, wait_for_port  # noqa: E402

BIN = PROJECT_DIR / ".venv" / "bin"
OUT_DIR = BENCH_DIR / "out"
RESULTS = BENCH_DIR / "RESULTS.md"
START, END = "<!-- mixed run: start (bench/mixed.py) -->", "<!-- mixed run: end -->"

SECONDS = float(os.environ.get("BENCH_MIXED_SECONDS", "15"))
READERS = 8
READER_PAUSE = 0.05  # seconds between one reader's requests
FLOODERS = 2
SLOW_CLIENTS = 200
SLOW_BODY_CLIENTS = 50
UPLOADERS = 2
OWNER = {"username": "mixed_owner", "password": "mixed-owner-password"}
TRICKLE_EVERY = 3.5
NGINX_WORKERS = 4  # docs/deploy-server.md's WEB_CONCURRENCY
HOSTILE_HEAD_START = 3.0  # seconds the hostile client runs before the readers start


@dataclass
class Outcome:
    way: str
    scenario: str
    latencies: list[float]
    errors: int
    hostile: str
    peak_mb: int = 0
    recycled: int = 0

    def pct(self, q):
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


def session_from(address: str, verify) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.verify = verify
    adapter = requests.adapters.HTTPAdapter()
    adapter.init_poolmanager(4, 4, source_address=(address, 0))
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def reader(url, address, verify, stop, latencies, errors):
    http = session_from(address, verify)
    while not stop.is_set():
        started = time.monotonic()
        try:
            response = http.get(f"{url}/items", timeout=30)
            ok = response.status_code == 200
        except requests.RequestException:
            ok = False
        elapsed = time.monotonic() - started
        if ok:
            latencies.append(elapsed)
        else:
            errors.append(elapsed)
        stop.wait(READER_PAUSE)


def flooder(url, verify, stop, counts, lock):
    http = session_from("127.0.0.200", verify)
    while not stop.is_set():
        name = "flood" + secrets.token_hex(6)
        try:
            status = http.post(
                f"{url}/register", json={"username": name, "password": "flood-password"}, timeout=30
            ).status_code
        except requests.RequestException:
            status = "error"
        with lock:
            counts[status] = counts.get(status, 0) + 1


BOMBS = [
    image_samples.webp_lossless_bomb(),
    image_samples.animated_webp_bomb(),
    image_samples.transparent_palette_png_bomb(),
    image_samples.progressive_jpeg_bomb(),
]
# Small files that are accepted, and cost the most (bench/image_bombs.py).
COSTLY = [
    image_samples.progressive_jpeg_bomb(scans=32),  # 2 KB, 32 scans (the limit) of 6320 x 6320, stored at 1/2
    image_samples.transparent_palette_png_bomb(3200, 3200),  # 10 KB, RGBA at the budget
    image_samples.encode(image_samples.gradient((5000, 5000)), "PNG"),  # 86 KB, RGB at the budget
]
UPLOADS = {"image bombs": BOMBS, "costly uploads": COSTLY}
# Each upload scenario from its own address: Nginx's per-address request rate
# (deploy/nginx.conf) answers one scenario's flood with 429s, and would refuse
# the next scenario's logins from the same address.
UPLOAD_ADDRESSES = {"image bombs": "127.0.0.203", "costly uploads": "127.0.0.204"}
# Extra uWSGI flags for every server (after the ini, so they override it), as bench/run.py takes them.
UWSGI_ARGS = shlex.split(os.environ.get("BENCH_UWSGI_ARGS", ""))


def uploader(number, scenario, url, verify, stop, counts, lock, upload_times):
    """The owner uploading the scenario's files onto item mixed-<number>, back to back."""
    files = UPLOADS[scenario]
    http = session_from(UPLOAD_ADDRESSES[scenario], verify)
    token = http.post(f"{url}/login", json=OWNER, timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            bomb = {"image": ("bomb", files[n % len(files)])}
            answer = http.put(f"{url}/item/mixed-{number}/image", files=bomb, headers=headers, timeout=60)
            status = answer.status_code
        except requests.RequestException:
            status = "error"
        with lock:
            counts[status] = counts.get(status, 0) + 1
            upload_times.append(time.monotonic() - started)
        n += 1


def upload_attack(scenario, url, verify, stop, results):
    """The UPLOADERS threads, in a process of their own (the readers are
    threads: in their process, the uploaders' multipart encoding would hold
    the GIL the readers' timing needs). Puts (counts, upload times) on
    `results` once `stop` is set."""
    done, counts, lock, upload_times = threading.Event(), {}, threading.Lock(), []
    threads = [
        threading.Thread(target=uploader, args=(n, scenario, url, verify, done, counts, lock, upload_times))
        for n in range(UPLOADERS)
    ]
    for t in threads:
        t.start()
    stop.wait()
    done.set()
    for t in threads:
        t.join(60)
    results.put((counts, upload_times))


def uwsgi_processes(master):
    """The master's children (workers, mules): pid -> VmHWM in MB."""
    peaks = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry.name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0")) == master and "VmHWM" in fields:
            peaks[int(entry.name)] = int(fields["VmHWM"].split()[0]) // 1024
    return peaks


def reset_peaks(pids):
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            pass


SLOW_OPENINGS = {
    "slow headers": (b"GET /items HTTP/1.1\r\nHost: localhost\r\n", "127.0.0.201"),
    "slow bodies": (
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        "127.0.0.202",
    ),
}


def slow_clients(kind, host_port, use_tls, cafile, stop, opened):
    """Connections trickling header lines (or body bytes) until stopped; slow
    bodies reconnect when the server lets them go, as an attacker would."""
    opening, source = SLOW_OPENINGS[kind]
    count = SLOW_CLIENTS if kind == "slow headers" else SLOW_BODY_CLIENTS
    context = ssl.create_default_context(cafile=cafile) if use_tls else None

    def connect():
        try:
            raw = socket.create_connection(host_port, timeout=5, source_address=(source, 0))
            conn = context.wrap_socket(raw, server_hostname="localhost") if use_tls else raw
            conn.sendall(opening)
            return conn
        except OSError:
            return None

    conns = [conn for conn in (connect() for _ in range(count)) if conn is not None and not stop.is_set()]
    opened.append(len(conns))
    n = 0
    while not stop.wait(TRICKLE_EVERY):
        for conn in list(conns):
            try:
                conn.sendall(f"X-Slow-{n}: {n}\r\n".encode() if kind == "slow headers" else b" ")
            except OSError:
                conns.remove(conn)  # the server let it go, as it may
                conn.close()
                if kind == "slow bodies" and (again := connect()) is not None:
                    conns.append(again)
        n += 1
    for conn in conns:
        conn.close()
    opened.append(len(conns))


def run_scenario(way, scenario, url, verify, master, slow_target=None, use_tls=False, cafile=None):
    stop = threading.Event()
    latencies, errors = [], []
    counts, lock, opened, upload_times = {}, threading.Lock(), [], []
    before = uwsgi_processes(master)
    reset_peaks(before)
    hostile, attack = [], None
    if scenario == "registration flood":
        hostile = [threading.Thread(target=flooder, args=(url, verify, stop, counts, lock)) for _ in range(FLOODERS)]
    elif scenario in UPLOADS:
        forked = multiprocessing.get_context("fork")
        attack_stop, attack_results = forked.Event(), forked.Queue()
        attack = forked.Process(target=upload_attack, args=(scenario, url, verify, attack_stop, attack_results))
        attack.start()
    elif scenario in SLOW_OPENINGS:
        hostile = [threading.Thread(target=slow_clients, args=(scenario, slow_target, use_tls, cafile, stop, opened))]
    for t in hostile:
        t.start()
    # The readers measure the attack's steady state: they start once the
    # hostile client is under way (its connections open, its burst spent).
    if hostile or attack:
        time.sleep(HOSTILE_HEAD_START)
    readers = [
        threading.Thread(target=reader, args=(url, f"127.0.0.{10 + i}", verify, stop, latencies, errors))
        for i in range(READERS)
    ]
    for t in readers:
        t.start()
    threads = hostile + readers
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(60)
    if attack is not None:
        attack_stop.set()
        counts, upload_times = attack_results.get(timeout=90)
        attack.join(30)
    after = uwsgi_processes(master)
    peak_mb = max(after.values(), default=0)
    recycled = len(set(before) - set(after))
    if scenario == "registration flood" or scenario in UPLOADS:
        sent = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str))
        what = "registrations" if scenario == "registration flood" else "uploads"
        hostile = f"{sum(counts.values())} {what} ({sent})"
        if upload_times:
            times = sorted(upload_times)
            hostile += f"; upload p50 {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
    elif scenario in SLOW_OPENINGS:
        hostile = (
            f"{opened[0] if opened else 0} slow connections opened, "
            f"{opened[-1] if len(opened) > 1 else '?'} still held at the end"
        )
    else:
        hostile = "-"
    outcome = Outcome(way, scenario, latencies, len(errors), hostile, peak_mb, recycled)
    print(
        f"{way:<28} {scenario:<20} reader requests {len(latencies):>5}  p50 {outcome.pct(0.5):7.1f} ms  "
        f"p99 {outcome.pct(0.99):7.1f} ms  failed {len(errors)}  peak {peak_mb} MB  recycled {recycled}"
        f"  | {hostile}",
        flush=True,
    )
    return outcome


def app_env(db_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "PORT", "WEB_CONCURRENCY") and not k.startswith(("UWSGI_", "ARGON2_"))
    }
    env.update(
        APP_ENV="production",
        JWT_SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=f"sqlite:///{db_path}",
        # What the servers write besides the database stays beside it, not in the checkout.
        WEBHOOK_QUEUE_PATH=f"{db_path}.queue",
        RUNTIME_DIR=str(Path(db_path).parent),
        WEB_CONCURRENCY="2",
        # The upload scenarios measure decoding, not the upload limit
        # (BENCH_MIXED_UPLOAD_LIMIT="60 per hour" measures production's).
        IMAGE_UPLOAD_RATE_LIMIT=os.environ.get("BENCH_MIXED_UPLOAD_LIMIT", "1000000 per hour"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def fresh_database(name):
    workdir = Path(os.environ.get("BENCH_WORKDIR", "/tmp/stores-bench"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / f"mixed-{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    env = app_env(db_path)
    subprocess.run(
        [str(BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True, capture_output=True
    )
    return env


def seed(url, verify):
    http = session_from("127.0.0.5", verify)
    http.post(f"{url}/register", json=OWNER, timeout=30)
    token = http.post(f"{url}/login", json=OWNER, timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    store_id = http.post(f"{url}/store/mixed", headers=headers, timeout=30).json()["id"]
    for n in range(10):
        http.post(f"{url}/item/mixed-{n}", headers=headers, json={"price": n + 0.5, "store_id": store_id}, timeout=30)


def start_uwsgi(args, env, log_name, ready_url, verify=False):
    log = open(OUT_DIR / log_name, "w")
    proc = subprocess.Popen(
        [str(BIN / "uwsgi"), *args],
        cwd=PROJECT_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if ready_url is None or requests.get(ready_url, timeout=2, verify=verify).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"uWSGI did not start; see {OUT_DIR / log_name}")
        time.sleep(0.1)


def stop(proc):
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


SCENARIOS = ["quiet", "registration flood", "slow headers", "slow bodies", "image bombs", "costly uploads"]


def through_nginx(scenarios):
    env = fresh_database("nginx")
    socket_port = free_port()
    # 4 workers, as docs/deploy-server.md's environment file sets.
    env = {**env, "UWSGI_SOCKET": f"127.0.0.1:{socket_port}", "WEB_CONCURRENCY": str(NGINX_WORKERS)}
    proc = start_uwsgi(
        ["--ini", "uwsgi.ini:nginx", "--disable-logging", *UWSGI_ARGS], env, "mixed-uwsgi-nginx.log", None
    )
    nginx = NginxServer([f"127.0.0.1:{socket_port}"])
    try:
        wait_for_port(socket_port, 30, proc)
        nginx.start()
        url, verify = nginx.base_url, str(nginx.cert)
        deadline = time.monotonic() + 30
        while requests.get(f"{url}/health/ready", verify=verify, timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        seed(url, verify)
        way = "through Nginx"
        target = ("127.0.0.1", nginx.https_port)
        return [run_scenario(way, s, url, verify, proc.pid, target, True, verify) for s in scenarios]
    finally:
        nginx.cleanup()
        stop(proc)


def straight_to_uwsgi(scenarios):
    env = fresh_database("direct")
    port = free_port()
    env = {**env, "PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    proc = start_uwsgi(
        ["--ini", "uwsgi.ini", "--disable-logging", *UWSGI_ARGS], env, "mixed-uwsgi-direct.log", f"{url}/health"
    )
    try:
        seed(url, False)
        way = "straight to uWSGI (Heroku)"
        return [run_scenario(way, s, url, False, proc.pid, ("127.0.0.1", port)) for s in scenarios]
    finally:
        stop(proc)


def markdown(outcomes):
    lines = [
        START,
        "",
        "## Mixed run: readers beside a hostile client (bench/mixed.py)",
        "",
        f"{READERS} readers (each its own address, GET /items with a {READER_PAUSE * 1000:.0f} ms pause), "
        f"{SECONDS:.0f} s a scenario, argon2 at the production cost; uWSGI workers: {NGINX_WORKERS} behind "
        "Nginx (docs/deploy-server.md's WEB_CONCURRENCY), 2 straight (the default). "
        f"Flood: {FLOODERS} threads POST /register from one address. Slow headers: "
        f"{SLOW_CLIENTS} connections from one address sending a header line every {TRICKLE_EVERY} s. "
        f"Slow bodies: {SLOW_BODY_CLIENTS} connections from one address sending a POST /login body a byte "
        f"every {TRICKLE_EVERY} s, reconnecting when let go. "
        f"Image bombs: {UPLOADERS} threads of the owner uploading the {len(BOMBS)} bombs of "
        "tests/support/image_samples.py back to back (upload limit lifted). "
        f"Costly uploads: the same with the {len(COSTLY)} small files the API accepts that cost the most "
        "(a 32-scan progressive JPEG of 6320 x 6320, a palette PNG with transparency and an RGB PNG "
        "each at the decode budget). "
        f"The hostile client starts {HOSTILE_HEAD_START:.0f} s before the readers (steady state). "
        "Clients and servers share this machine's CPUs. "
        "Peak MB: the largest peak resident memory (VmHWM, reset at the scenario's start) of the "
        "uWSGI master's children; recycled: workers replaced during the scenario (reload-on-rss = 160). "
        "Goal: readers' p99 within 2x of the quiet run."
        + (f" Extra uWSGI flags (BENCH_UWSGI_ARGS): `{shlex.join(UWSGI_ARGS)}`." if UWSGI_ARGS else ""),
        "",
        "| way in | scenario | reader requests | p50 ms | p99 ms | p99 vs quiet | failed | peak MB | recycled "
        "| hostile client |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    quiet = {o.way: o.pct(0.99) for o in outcomes if o.scenario == "quiet"}
    for o in outcomes:
        ratio = o.pct(0.99) / quiet[o.way] if quiet.get(o.way) else float("nan")
        verdict = "" if o.scenario == "quiet" else (" ok" if ratio <= 2 else " **over 2x**")
        lines.append(
            f"| {o.way} | {o.scenario} | {len(o.latencies)} | {o.pct(0.5):.1f} | {o.pct(0.99):.1f} | "
            f"{ratio:.2f}x{verdict} | {o.errors} | {o.peak_mb} | {o.recycled} | {o.hostile} |"
        )
    lines += ["", END]
    return "\n".join(lines) + "\n"


def main():
    unknown = [name for name in sys.argv[1:] if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s) {unknown}; the scenarios: {SCENARIOS}")
    scenarios = [s for s in SCENARIOS if s == "quiet" or s in sys.argv[1:]] if sys.argv[1:] else SCENARIOS
    OUT_DIR.mkdir(exist_ok=True)
    outcomes = through_nginx(scenarios) + straight_to_uwsgi(scenarios)
    section = markdown(outcomes)
    if scenarios == SCENARIOS:
        write_section(RESULTS, START, END, section)
    print(section)


if __name__ == "__main__":
    main()
