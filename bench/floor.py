"""Issue 19's gap, split: the real app, the floor (bench/floor_app.py: the
least the design card's stack does for the same answer) and the bare app,
measured back to back on the same data, on SQLite and on PostgreSQL + Redis.

    app / bare    what issue 19's goals compare
    floor / bare  the stack's own share of the gap: Flask-RESTful,
                  Flask-JWT-Extended, Flask-SQLAlchemy, the relay, the driver
    app / floor   what the real app adds on top (revocation check, ETag,
                  filters, paging, count, log line, headers)

The real app and the floor run under `uwsgi --ini uwsgi.ini` (the relay in
front, 2 workers x 1 thread, the settings bench/run.py uses), the floor with
`--module floor_app:app` and no webhook mule; the bare app on a plain
`--http-socket`, as in bench/run.py. Both serve one database, seeded over
HTTP through the real app (20 stores x 50 items); the floor's bodies are
checked to be the real app's, byte for byte. Each run is made BENCH_ROUNDS
times (default 3) and the fastest kept, as bench/run.py does.

Usage: `.venv/bin/python bench/floor.py` (`make bench` runs it). Writes the
"Floor" section of bench/RESULTS.md; wrk's reports and the servers' logs go
to bench/out/. Settings: those of bench/run.py (BENCH_DURATION,
BENCH_ROUNDS, BENCH_BACKENDS, BENCH_POSTGRES_URL, BENCH_REDIS_URL, ...);
ports BENCH_PORT + 10 to + 13 (default 20010-20013).
"""

import json
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import seed  # noqa: E402
from report import write_section  # noqa: E402
from run import BACKENDS, OUT_DIR, PROJECT_DIR, Bench, Settings  # noqa: E402
from uwsgi_server import UwsgiServer  # noqa: E402

RESULTS = BENCH_DIR / "RESULTS.md"
START, END = "<!-- floor: start (bench/floor.py) -->", "<!-- floor: end -->"
STORES, ITEMS_PER_STORE = 20, 50
# (key, label, path, needs a token, the bare app's variant)
ENDPOINTS = (
    ("item", "GET /item/<name> (auth)", f"/item/{seed.item_name(STORES * ITEMS_PER_STORE // 2)}", True, "bytes"),
    ("items", "GET /items?per_page=1000 (auth)", "/items?per_page=1000", True, "dumps"),
    ("stores", "GET /stores", "/stores", False, "dumps"),
)


def start_floor(bench, app_server, port, plain=False):
    """floor_app under the real app's uwsgi.ini and settings, on its database:
    behind the relay as the real app is, or (`plain`) on a plain --http-socket
    as the bare app is."""
    env = dict(app_server.env, WEBHOOK_WORKER_EXTERNAL="1")
    front = ["--http-socket", f"127.0.0.1:{port}", "--add-header", "Connection: close"] if plain else []
    name = f"floor-{'plain-' if plain else ''}{bench.backend}"
    server = UwsgiServer(
        name,
        PROJECT_DIR,
        port,
        env,
        OUT_DIR / f"uwsgi-{name}.log",
        extra_args=[*front, "--pythonpath", str(BENCH_DIR), "--module", "floor_app:app", *bench.settings.uwsgi_args],
        section="app" if plain else "",
    )
    return server.start()


def run_backend(bench, port):
    """{endpoint key: {"app"|"floor"|"bare": Measurement}} and {server: worker RSS KiB}."""
    print(f"floor ({bench.backend})", flush=True)
    app_server, _ = bench.start_app(f"floor-{bench.backend}", port)
    servers = {"app": app_server}
    try:
        client = seed.ApiClient(app_server.base_url)
        token = client.register_and_login()
        seed.seed_over_http(client, STORES, ITEMS_PER_STORE)
        servers["floor"] = start_floor(bench, app_server, port + 2)
        servers["floor, plain"] = start_floor(bench, app_server, port + 3, plain=True)
        rss = {"floor (fresh)": servers["floor"].worker_rss_kib()}
        runs = {}
        for key, label, path, with_token, variant in ENDPOINTS:
            common = dict(token=token if with_token else None, body_key=f"{key}-floor", compare_with=variant)
            runs[key] = {
                name: bench.measure(server, label, key, "1,000 items", "1000", path, **common)
                for name, server in servers.items()
            }
            if any(m.body != runs[key]["app"].body for m in runs[key].values()):
                raise RuntimeError(f"{label}: the floor's body differs from the real app's")
            bench.bare_run(f"{key}-floor", runs[key]["app"].body, (variant,), "1,000 items", "1000")
            runs[key]["bare"] = bench.measurements[-1]
        for name in ("app", "floor"):
            servers[name].wait_idle()
            rss[name] = servers[name].worker_rss_kib()
        return runs, rss
    finally:
        for server in servers.values():
            server.stop()


SERVER_LABELS = {
    "app": "the real app (relay)",
    "floor": "floor (relay)",
    "floor, plain": "floor (plain --http-socket)",
    "bare": "bare (plain --http-socket)",
}


def section_text(results, started):
    lines = [
        START,
        "## Floor: the real app, the least its stack does, and the bare app",
        "",
        f"Written by `bench/floor.py` on {started}, 20 stores x 50 items. The floor is",
        "bench/floor_app.py: Flask-RESTful, Flask-JWT-Extended (signature and expiry checked on",
        "every request), Flask-SQLAlchemy, one SELECT per answer (two for the stores), orjson; served",
        "behind the relay as the real app is, and on a plain `--http-socket` as the bare app is;",
        "the same bytes from the same database. `× bare` is req/s over the bare app's (its bytes for",
        "the item, `json.dumps` for the lists); CPU is the server's (relay and workers) per request,",
        "DB CPU PostgreSQL's backends'.",
        "",
    ]
    for backend, (runs, rss) in results.items():
        lines += [
            f"### {BACKENDS[backend]}",
            "",
            "| endpoint | server | req/s | × bare | CPU ms/req | DB CPU ms/req |",
            "|---|---|---|---|---|---|",
        ]
        for key, label, *_ in ENDPOINTS:
            bare = runs[key]["bare"]
            for name, m in runs[key].items():
                database = "" if m.db_cpu_ms_per_request is None else f"{m.db_cpu_ms_per_request:.2f}"
                share = m.result.requests_per_second / bare.result.requests_per_second
                lines.append(
                    f"| {label} | {SERVER_LABELS[name]} | {m.result.requests_per_second:,.0f} | {share:.2f} "
                    f"| {m.cpu_ms_per_request:.2f} | {database} |"
                )
        listed = "; ".join(
            f"{name}: {', '.join(f'{kib / 1024:.1f}' for kib in workers.values())} MiB" for name, workers in rss.items()
        )
        lines += ["", f"Worker RSS: {listed}.", ""]
    lines.append(END)
    return "\n".join(lines)


def main():
    settings = Settings()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    port = settings.port + 10
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    bare = Bench(settings)
    bare.start_bare(port + 1)
    results = {}
    try:
        for backend in settings.backends:
            bench = Bench(settings, backend)
            bench.bare, bench.bodies_dir = bare.bare, bare.bodies_dir
            results[backend] = run_backend(bench, port)
    finally:
        bare.stop_bare()
    text = section_text(results, started)
    print("\n" + text)
    write_section(RESULTS, START, END, text)
    (OUT_DIR / "floor.json").write_text(
        json.dumps(
            {
                backend: {
                    key: {name: m.result.requests_per_second for name, m in by_name.items()}
                    for key, by_name in runs.items()
                }
                for backend, (runs, _) in results.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
