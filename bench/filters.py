"""Filtered and sorted lists at 200,000 items on PostgreSQL, and what a
polling client saves with If-None-Match.

Usage: `.venv/bin/python bench/filters.py` (`make bench` runs it). Needs the
PostgreSQL server the tests use (BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/postgres, used to create and drop a
scratch database with a linguistic collation, as Heroku's have).

- The catalogue is bulk-loaded by plain SQL, as operators import one (200
  stores, 200,000 items named "<word> <md5>"), then VACUUM ANALYZE.
- One client asks each combination of the contract's filters and sorts for
  its first page, BENCH_FILTER_REQUESTS times (default 100), through the real
  server (`uwsgi --ini uwsgi.ini`, 2 workers); p50 and p99, each request on a
  new connection.
- The plan of every statement of every combination (EXPLAIN ANALYZE, run in
  process on the same database) goes to bench/out/filters-plans.txt; the
  table names the indexes each one used and flags any sequential scan.

Goal (issue: lists and edits): every combination's first page under 50 ms p99.
Writes the "Filters at scale" section of bench/RESULTS.md.
"""

import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import sqlalchemy

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from front_door import app_env  # noqa: E402
from report import write_section  # noqa: E402
from uwsgi_server import PROJECT_DIR, UwsgiServer, migrate  # noqa: E402

# The project's modules before bench/'s (bench/webhooks.py is not the `webhooks` package).
sys.path.insert(0, str(BENCH_DIR.parent))

import blacklist  # noqa: E402
from config import database_url as sqlalchemy_url  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
RESULTS = BENCH_DIR / "RESULTS.md"
START, END = "<!-- filters: start (bench/filters.py) -->", "<!-- filters: end -->"
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUESTS = int(os.environ.get("BENCH_FILTER_REQUESTS", "100"))
PORT = int(os.environ.get("BENCH_PORT", "20100")) + 10
ITEMS, STORES = 200_000, 200
GOAL_P99_MS = 50.0

LOAD = [
    f"""INSERT INTO stores (name, owner_id)
        SELECT 'store ' || lpad(s::text, 4, '0'), CASE WHEN s % 2 = 0 THEN :owner END
        FROM generate_series(1, {STORES}) s""",
    f"""INSERT INTO items (name, price, store_id)
        SELECT (ARRAY['Chair', 'table', 'Lamp', 'desk', 'Sofa', 'shelf', 'Rug', 'bed'])[1 + i % 8]
               || ' ' || md5(i::text),
               round((random() * 999)::numeric, 2),
               (SELECT min(id) FROM stores) + (i * 7919) % {STORES}
        FROM generate_series(1, {ITEMS}) i""",
]

ITEM_FILTERS = [
    {},
    {"q": "chair"},  # one item in 8
    {"q": "c0ffee"},  # a handful
    {"q": "zz"},  # none, and too short for a trigram
    {"min_price": "100", "max_price": "110"},
    {"min_price": "10"},
    {"store_id": "17"},
    {"q": "chair", "min_price": "100", "max_price": "200"},
    {"q": "lamp", "store_id": "17"},
    {"store_id": "17", "min_price": "500"},
]
ITEM_SORTS = ["id", "-id", "name", "-name", "price", "-price"]
STORE_FILTERS = [{}, {"q": "store 01"}, {"owner_id": "{owner}"}, {"q": "store 01", "owner_id": "{owner}"}]
STORE_SORTS = ["id", "-id", "name", "-name"]


def scratch_database():
    name = f"stores_bench_filters_{secrets.token_hex(4)}"
    engine = sqlalchemy.create_engine(sqlalchemy_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        locale = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}" {locale}'))
    return engine, name, ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def load_catalogue(database_url, owner_id):
    engine = sqlalchemy.create_engine(sqlalchemy_url(database_url))
    started = time.monotonic()
    with engine.begin() as conn:
        for statement in LOAD:
            conn.execute(sqlalchemy.text(statement), {"owner": owner_id})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sqlalchemy.text("VACUUM ANALYZE items"))
        conn.execute(sqlalchemy.text("VACUUM ANALYZE stores"))
    engine.dispose()
    return time.monotonic() - started


def combinations(owner_id):
    for filters in ITEM_FILTERS:
        for sort in ITEM_SORTS:
            yield "/items", {**filters, "sort": sort}
    for filters in STORE_FILTERS:
        for sort in STORE_SORTS:
            yield "/stores", {k: v.format(owner=owner_id) for k, v in {**filters, "sort": sort}.items()}


def timings(url, params, headers):
    headers = {**headers, "Connection": "close"}
    for _ in range(5):
        requests.get(url, params=params, headers=headers).raise_for_status()
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = requests.get(url, params=params, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.99 * len(samples)) - 1)], response


def plans(env, owner_id, token):
    """EXPLAIN ANALYZE of every SELECT each combination runs, in process on the same database."""
    os.environ.update(env)
    from sqlalchemy import event

    from app import create_app
    from db import db

    app = create_app()
    client = app.test_client()
    seen = []
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append((args[2], args[3])))
    found = {}
    for path, params in combinations(owner_id):
        seen.clear()
        client.get(path, query_string=params, headers={"Authorization": f"Bearer {token}"})
        # Each statement without the token check that rides ahead of a read's first one (blacklist.py).
        seen = [(s.removeprefix(blacklist.PG_CHECK), p) for s, p in seen]
        statements = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT")]
        with engine.connect() as conn:
            found[(path, tuple(params.items()))] = [
                "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN ANALYZE " + s, p)) for s, p in statements
            ]
    engine.dispose()
    return found


def index_summary(plan_texts):
    used = []
    for text in plan_texts:
        for line in text.splitlines():
            for marker in (" using ", " on "):
                if ("Index" in line or "Bitmap Index" in line) and marker in line and "Scan" in line:
                    name = line.split(" using " if " using " in line else " on ")[1].split()[0]
                    if name not in used:
                        used.append(name)
                    break
    # A scan of the small stores table (or of a page's ids) is no concern; of items it is.
    seq = any("Seq Scan on items" in text for text in plan_texts)
    return ", ".join(used) + (" **+ Seq Scan on items**" if seq else "")


def polling_savings(http, url):
    """Bytes a client polling one store 100 times receives, without and with If-None-Match."""
    plain = sum(len(http.get(url).content) for _ in range(100))
    tag = http.get(url).headers["ETag"]
    conditional = 0
    for _ in range(100):
        response = http.get(url, headers={"If-None-Match": tag})
        assert response.status_code == 304
        conditional += len(response.content)
    return plain, conditional


def main():
    OUT_DIR.mkdir(exist_ok=True)
    admin, name, database_url = scratch_database()
    server = None
    try:
        env = app_env(None, database_url)
        migrate(env)
        workdir = Path(tempfile.mkdtemp(prefix="stores-filters-"))
        server = UwsgiServer("filters", PROJECT_DIR, PORT, env, workdir / "uwsgi.log").start()
        http = requests.Session()
        credentials = {"username": "bench", "password": secrets.token_hex(16)}
        owner_id = http.post(server.base_url + "/register", json=credentials).json()["id"]
        token = http.post(server.base_url + "/login", json=credentials).json()["access_token"]
        load_seconds = load_catalogue(database_url, owner_id)
        headers = {"Authorization": f"Bearer {token}"}
        rows = []
        for path, params in combinations(owner_id):
            p50, p99, response = timings(server.base_url + path, params, headers)
            rows.append((path, params, p50, p99, response.json()["total"]))
        plain, conditional = polling_savings(http, server.base_url + "/store/store%200017")
        server.stop()
        found = plans(env, owner_id, token)
    finally:
        if server is not None:
            server.stop()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    with open(OUT_DIR / "filters-plans.txt", "w") as out:
        for (path, params), texts in found.items():
            out.write(f"=== GET {path}?{'&'.join(f'{k}={v}' for k, v in params)}\n" + "\n---\n".join(texts) + "\n\n")
    worst = max(p99 for *_, p99, _ in rows)
    lines = [
        START,
        "## Filters at scale (bench/filters.py)",
        "",
        f"PostgreSQL, {ITEMS:,} items in {STORES} stores loaded by SQL in {load_seconds:.1f} s; one client"
        " (a new connection per request),"
        f" {REQUESTS} requests per row through `uwsgi --ini uwsgi.ini` (2 workers), a token on every request;"
        " the first page (per_page 100). Plans: bench/out/filters-plans.txt.",
        "",
        f"Worst p99: **{worst:.1f} ms** (goal < {GOAL_P99_MS:.0f} ms): "
        + ("met." if worst < GOAL_P99_MS else "**not met**."),
        "",
        "| request | total | p50 ms | p99 ms | indexes the plan used |",
        "|---|---:|---:|---:|---|",
    ]
    for path, params, p50, p99, total in rows:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        summary = index_summary(found[(path, tuple(params.items()))])
        lines.append(f"| `{path}?{query}` | {total:,} | {p50:.1f} | {p99:.1f} | {summary} |")
    lines += [
        "",
        f"A client polling one store (100 embedded items) 100 times: {plain:,} body bytes without If-None-Match,"
        f" {conditional:,} with it (every answer a 304).",
        END,
    ]
    write_section(RESULTS, START, END, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
