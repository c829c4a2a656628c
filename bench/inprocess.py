"""Per-request CPU of the app's WSGI callable, in-process: no uWSGI, no sockets, no wrk.

A quick and steady check of what a code change costs or saves, in a few
seconds and nearly independent of what else the machine is doing (it counts
this process's CPU time, not wall time). The real benchmark is bench/run.py;
this is the tool for the loop "change, measure, change".

    .venv/bin/python bench/inprocess.py                  # ms of CPU per request
    .venv/bin/python bench/inprocess.py --profile item   # and a pyinstrument profile

It builds a fresh SQLite database in a temporary directory (`flask db
upgrade`), loads the app as production would (APP_ENV=production, argon2 at
full cost), seeds 20 stores x 50 items through the app itself, then calls the
WSGI callable directly with a prepared environ for each endpoint. The
request-log line is still written (to /dev/null), so its cost is counted.
--profile needs pyinstrument (`.venv/bin/pip install pyinstrument`).
"""

import argparse
import io
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import fresh_postgres_database
from seed import PASSWORD, USERNAME, item_name, item_price, store_name

PROJECT_DIR = Path(__file__).resolve().parent.parent
STORES, ITEMS_PER_STORE = 20, 50


POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def load_app(db_path, backend="sqlite"):
    """The app, configured from the environment as uWSGI would load it: SQLite
    without Redis, or PostgreSQL with Redis (the production stack)."""
    os.environ.pop("REDIS_URL", None)
    os.environ.update(
        APP_ENV="production",
        JWT_SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=f"sqlite:///{db_path}",
        LOGIN_RATE_LIMIT="1000000 per minute",
    )
    if backend == "postgresql":
        os.environ.update(
            DATABASE_URL=fresh_postgres_database(POSTGRES_ADMIN_URL, "stores_inprocess"), REDIS_URL=REDIS_URL
        )
    subprocess.run(
        [str(PROJECT_DIR / ".venv" / "bin" / "flask"), "--app", "app", "db", "upgrade"],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(PROJECT_DIR))
    os.chdir(PROJECT_DIR)
    # wsgi.py's `application`, as uWSGI loads it (the WSGI entry is counted too).
    import wsgi

    # Keep the per-request log line (its cost is real) but not on the terminal.
    for handler in logging.getLogger("stores_api").handlers:
        handler.setStream(open(os.devnull, "w"))
    return wsgi.application


def environ(method, path, query="", headers=None, body=None):
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(method=method, path=path, query_string=query, headers=headers or {}, json=body).get_environ()


def call(app, env):
    """One request through the WSGI callable; returns (status, body bytes)."""
    env = dict(env)
    env["wsgi.input"] = io.BytesIO(env.pop("bench.body", b""))
    status = []
    chunks = app(env, lambda s, headers, exc_info=None: status.append(s))
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return status[0], body


def post(app, path, body, headers=None):
    env = environ("POST", path, headers=headers, body=body)
    env["bench.body"] = env["wsgi.input"].read()
    status, data = call(app, env)
    if not status.startswith("20"):
        raise RuntimeError(f"POST {path} -> {status}: {data[:300]!r}")
    return json.loads(data)


def seed(app):
    credentials = {"username": USERNAME, "password": PASSWORD}
    post(app, "/register", credentials)
    token = post(app, "/login", credentials)["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    number = 0
    for store in range(1, STORES + 1):
        store_id = post(app, f"/store/{store_name(store)}", None, auth)["id"]
        for _ in range(ITEMS_PER_STORE):
            number += 1
            post(app, f"/item/{item_name(number)}", {"price": item_price(number), "store_id": store_id}, auth)
    return auth


def endpoints(auth):
    middle = item_name(STORES * ITEMS_PER_STORE // 2)
    return {
        "health": environ("GET", "/health"),
        "item": environ("GET", f"/item/{middle}", headers=auth),
        "items": environ("GET", "/items", "per_page=1000", headers=auth),
        "stores": environ("GET", "/stores"),
    }


BATCHES = 10


def cpu_ms_per_request(app, env, requests):
    """(best, median) CPU ms per request over BATCHES batches of the requests.
    The machine's neighbours slow some batches (by up to 40 % here); the best
    batch is what the code costs, as timeit's minimum is."""
    for _ in range(min(100, requests)):  # warm caches (SQLAlchemy, pool, tokens)
        call(app, env)
    per_batch = max(requests // BATCHES, 1)
    means = []
    for _ in range(BATCHES):
        started = time.process_time()
        for _ in range(per_batch):
            call(app, env)
        means.append((time.process_time() - started) * 1000 / per_batch)
    means.sort()
    return means[0], means[len(means) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per endpoint (the 1,000-item lists get a tenth)"
    )
    parser.add_argument(
        "--profile",
        choices=["health", "item", "items", "stores"],
        help="also print a pyinstrument profile of this endpoint",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="postgresql: a fresh database on BENCH_POSTGRES_URL's server, and Redis at BENCH_REDIS_URL",
    )
    parser.add_argument("--cprofile", metavar="PATH", help="also write a cProfile (pstats) of --profile's endpoint")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stores-inprocess-") as workdir:
        app = load_app(Path(workdir) / "bench.db", args.backend)
        started = time.monotonic()
        auth = seed(app)
        print(f"seeded {STORES} stores x {ITEMS_PER_STORE} items in {time.monotonic() - started:.1f} s")
        cases = endpoints(auth)
        for name, env in cases.items():
            status, _ = call(app, env)
            if not status.startswith("200"):
                raise RuntimeError(f"{name}: {status}")
            requests = args.requests if name in ("health", "item") else max(args.requests // 10, 50)
            best, median = cpu_ms_per_request(app, env, requests)
            print(
                f"{name:<8} {best:.3f} ms CPU per request, best of {BATCHES} batches "
                f"(median {median:.3f}; {requests} requests)"
            )
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0001)
            env = cases[args.profile]
            requests = args.requests if args.profile in ("health", "item") else max(args.requests // 10, 50)
            profiler.start()
            for _ in range(requests):
                call(app, env)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False))
            if args.cprofile:
                import cProfile

                with cProfile.Profile() as cprofiler:
                    for _ in range(requests):
                        call(app, env)
                cprofiler.dump_stats(args.cprofile)


if __name__ == "__main__":
    main()
