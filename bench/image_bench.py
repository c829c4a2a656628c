"""Item image figures: `make bench` runs it after bench/run.py, or
`.venv/bin/python bench/image_bench.py`. Writes the "Item images" section of
bench/RESULTS.md (between the two marker lines; the rest of the file is
left alone) and prints it.

1. Serving: Nginx (deploy/nginx.conf, rendered by tests/support/nginx_harness.py)
   in front of `uwsgi --ini uwsgi.ini` with IMAGE_ACCEL_REDIRECT=/_images/.
   wrk fetches GET /item/<name>/image of a ~200 KB JPEG over HTTPS, then the
   same file served statically by the same Nginx (a bench-only location
   added to the rendered copy): the ratio is the cost of the app's lookup
   before Nginx sends the file. Goal: >= 0.5x.
2. Uploads: a ~4 MB JPEG (a 12-megapixel photo-like picture), PUT through
   Nginx. Server CPU per upload (uWSGI's master + workers, from /proc), and
   the peak resident memory (VmHWM) of each worker while 8 uploads run at
   once on 8 workers. Goal: no worker past uwsgi.ini's reload-on-rss (160 MB).

Settings (environment): BENCH_DURATION (seconds per wrk run, default 10),
BENCH_PORT (first port, default 20700; the next 3 are used too),
BENCH_WORKDIR (default /tmp/stores-bench-images).
"""

import io
import os
import re
import secrets
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from PIL import Image

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))

from report import write_section  # noqa: E402
from uwsgi_server import CLOCK_TICKS, UwsgiServer, migrate  # noqa: E402
from wrk_runner import CONNECTIONS, THREADS, run_wrk  # noqa: E402

from tests.support.nginx_harness import NginxServer  # noqa: E402

RESULTS = BENCH_DIR / "RESULTS.md"
START, END = "<!-- item-images:start -->", "<!-- item-images:end -->"
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
PORT = int(os.environ.get("BENCH_PORT", "20700"))
WORKDIR = Path(os.environ.get("BENCH_WORKDIR", "/tmp/stores-bench-images"))
RELOAD_ON_RSS_MB = int(re.search(r"^reload-on-rss\s*=\s*(\d+)", (PROJECT_DIR / "uwsgi.ini").read_text(), re.M).group(1))
PARALLEL_UPLOADS = 8
PASSWORD = "bench-images-password"


def photo_like_jpeg(size, quality, noise):
    """A JPEG that compresses like a photo: gradients plus `noise` grain."""
    width, height = size
    base = Image.linear_gradient("L").resize(size)
    grain = Image.effect_noise(size, noise)
    rgb = Image.merge("RGB", (base, grain, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def environment(database, images_dir, secret):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWSGI_")}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": f"sqlite:///{database}",
            "JWT_SECRET_KEY": secret,
            "LOGIN_RATE_LIMIT": "1000000 per minute",
            "IMAGE_STORAGE": f"file://{images_dir}",
            "IMAGE_ACCEL_REDIRECT": "/_images/",
        }
    )
    env.pop("REDIS_URL", None)
    return env


def add_static_location(nginx, images_dir):
    """The comparison: the same files, served by the same Nginx with no app."""
    site = nginx.prefix / "conf" / "stores-api.conf"
    text = site.read_text()
    anchor = "    location / {\n        uwsgi_pass stores_api;"
    assert text.count(anchor) == 1
    site.write_text(text.replace(anchor, f"    location /bench-static/ {{ alias {images_dir}/; }}\n\n{anchor}"))


def session(nginx):
    s = requests.Session()
    s.trust_env = False
    s.verify = str(nginx.cert)
    return s


def make_item(http, url):
    """Log in (registering the first time) and make sure item "lamp" exists."""
    credentials = {"username": "bench_images", "password": PASSWORD}
    http.post(f"{url}/register", json=credentials)
    token = http.post(f"{url}/login", json=credentials).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    http.post(f"{url}/store/bench", headers=headers)
    store = http.get(f"{url}/store/bench").json()
    http.put(f"{url}/item/lamp", json={"price": 1, "store_id": store["id"]}, headers=headers)
    return headers


def upload(http, url, headers, data):
    response = http.put(
        f"{url}/item/lamp/image", headers=headers, files={"image": ("photo.jpg", data, "image/jpeg")}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()["image_url"]


def serving_figures(nginx, http, headers, images_dir):
    url = nginx.base_url
    # ~200 KB once re-encoded (the server's quality 88 is what is served).
    image_url = upload(http, url, headers, photo_like_jpeg((850, 650), 90, 17))
    app_answer = http.get(url + image_url)
    key = next(p for p in images_dir.rglob("*.jpg") if ".thumb." not in p.name)
    static_path = f"/bench-static/{key.parent.name}/{key.name}"
    static_answer = http.get(url + static_path)
    assert app_answer.content == static_answer.content == key.read_bytes()
    plain_url = image_url.split("?")[0]
    assert http.get(url + plain_url).content == static_answer.content
    results = {}
    for label, path in (("versioned", image_url), ("app", plain_url), ("static", static_path)):
        run_wrk(url + path, 2)  # warm-up
        results[label] = run_wrk(url + path, DURATION)
    return len(app_answer.content), results


def worker_peaks_kib(server):
    peaks = {}
    for number, pid in server.worker_pids().items():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[number] = int(line.split()[1])
        except FileNotFoundError:
            pass
    return peaks


def upload_figures(server, nginx, http, headers):
    url = nginx.base_url
    data = photo_like_jpeg((4000, 3000), 88, 16)
    pixels = "4000 x 3000"
    rss_before = server.worker_rss_kib()
    # CPU: sequential uploads, the server idle in between.
    runs = 5
    server.wait_idle()
    ticks = server.cpu_ticks()
    started = time.monotonic()
    for _ in range(runs):
        upload(http, url, headers, data)
    wall_ms = (time.monotonic() - started) * 1000 / runs
    server.wait_idle()
    cpu_ms = (server.cpu_ticks() - ticks) * 1000 / CLOCK_TICKS / runs
    # Memory: PARALLEL_UPLOADS at once, one per worker.
    barrier = threading.Barrier(PARALLEL_UPLOADS)
    statuses = []

    def one():
        s = session(nginx)
        barrier.wait()
        statuses.append(
            s.put(
                f"{url}/item/lamp/image",
                headers=headers,
                files={"image": ("photo.jpg", data, "image/jpeg")},
                timeout=120,
            ).status_code
        )

    threads = [threading.Thread(target=one) for _ in range(PARALLEL_UPLOADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.wait_idle()
    return {
        "bytes": len(data),
        "pixels": pixels,
        "cpu_ms": cpu_ms,
        "wall_ms": wall_ms,
        "rss_before": rss_before,
        "peaks": worker_peaks_kib(server),
        "statuses": statuses,
        "respawns": server.respawn_count(),
    }


def start(env, processes, http_port, socket_port, images_dir, log_name):
    server = UwsgiServer(
        log_name,
        PROJECT_DIR,
        http_port,
        env,
        WORKDIR / f"{log_name}.log",
        extra_args=["--socket", f"127.0.0.1:{socket_port}"],
        processes=processes,
    ).start()
    nginx = NginxServer([f"127.0.0.1:{socket_port}"], prefix=WORKDIR / f"nginx-{log_name}", images_dir=images_dir)
    nginx.prepare()
    add_static_location(nginx, images_dir)
    return server, nginx.start()


def report(body_bytes, serving, uploads):
    versioned, app, static = serving["versioned"], serving["app"], serving["static"]
    ratio = versioned.requests_per_second / static.requests_per_second
    app_ratio = app.requests_per_second / static.requests_per_second
    peak_mb = max(uploads["peaks"].values()) / 1024
    before_mb = max(uploads["rss_before"].values()) / 1024
    lines = [
        START,
        "## Item images",
        "",
        f"Written by `make bench` (bench/image_bench.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        "Nginx (deploy/nginx.conf, HTTPS) in front of `uwsgi --ini uwsgi.ini` with "
        "IMAGE_ACCEL_REDIRECT=/_images/, SQLite, images on the local disk.",
        "",
        f"**Serving** a {body_bytes / 1024:.0f} KB JPEG, wrk {THREADS} threads x {CONNECTIONS} "
        f"connections, {DURATION} s, 2 uWSGI workers:",
        "",
        "| what | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|",
        f"| GET image_url: /item/<name>/image?v=<key> (Nginx alone, deploy/nginx.conf's map) | "
        f"{versioned.requests_per_second:,.0f} | {versioned.p50_ms:.2f} | {versioned.p99_ms:.2f} | "
        f"{versioned.non_2xx} |",
        f"| GET /item/<name>/image, no ?v= (app lookup, then X-Accel-Redirect) | {app.requests_per_second:,.0f} | "
        f"{app.p50_ms:.2f} | {app.p99_ms:.2f} | {app.non_2xx} |",
        f"| the same file, served statically by the same Nginx | {static.requests_per_second:,.0f} | "
        f"{static.p50_ms:.2f} | {static.p99_ms:.2f} | {static.non_2xx} |",
        "",
        f"Ratio to static: **{ratio:.2f}x** for image_url, the URL clients are given (goal >= 0.5x); "
        f"{app_ratio:.2f}x when the app is asked first (unversioned URL: a Flask request, ~0.3 ms of "
        "Python, then Nginx sends the file; on this 2-core machine wrk, Nginx's TLS and the two "
        "workers share the CPUs).",
        "",
        f"**Uploads** of a {uploads['bytes'] / 1e6:.1f} MB JPEG ({uploads['pixels']} pixels), multipart, "
        "through Nginx:",
        "",
        f"- server CPU per upload: **{uploads['cpu_ms']:.0f} ms** (uWSGI master + workers; mean of 5 "
        f"sequential uploads, {uploads['wall_ms']:.0f} ms wall each, Nginx's share not counted);",
        f"- peak resident memory (VmHWM) of each of {PARALLEL_UPLOADS} workers while "
        f"{PARALLEL_UPLOADS} uploads ran at once: "
        + ", ".join(f"{kib / 1024:.0f}" for _, kib in sorted(uploads["peaks"].items()))
        + f" MB; highest **{peak_mb:.0f} MB** (idle worker before: {before_mb:.0f} MB); "
        f"reload-on-rss is {RELOAD_ON_RSS_MB} MB: "
        + ("no worker passed it" if peak_mb < RELOAD_ON_RSS_MB else "**passed**")
        + f"; answers {sorted(set(uploads['statuses']))}, workers respawned: {uploads['respawns']}.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main():
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    os.chmod(WORKDIR, 0o755)  # Nginx's workers read the images folder
    images_dir = WORKDIR / "images"
    env = environment(WORKDIR / "bench.db", images_dir, secrets.token_urlsafe(48))
    migrate(env)

    server, nginx = start(env, 2, PORT, PORT + 1, images_dir, "serve")
    try:
        http = session(nginx)
        headers = make_item(http, nginx.base_url)
        body_bytes, serving = serving_figures(nginx, http, headers, images_dir)
    finally:
        nginx.stop()
        server.stop()

    server, nginx = start(env, PARALLEL_UPLOADS, PORT + 2, PORT + 3, images_dir, "upload")
    try:
        http = session(nginx)
        headers = make_item(http, nginx.base_url)
        uploads = upload_figures(server, nginx, http, headers)
    finally:
        nginx.stop()
        server.stop()

    section = report(body_bytes, serving, uploads)
    write_section(RESULTS, START, END, section)
    print(section)


if __name__ == "__main__":
    main()
