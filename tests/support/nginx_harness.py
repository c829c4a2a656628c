"""Run the production Nginx config (deploy/nginx.conf) on free local ports.

deploy/nginx.conf is what a user copies to /etc/nginx/sites-available/. The
end-to-end tests must exercise that same file, not a look-alike, so this
module renders it for a test run by changing only what a test machine needs
different, each change a literal substitution that must match exactly once
(so an edit of the production file that a test would silently stop covering
breaks the tests loudly instead):

  - the upstream's unix socket  -> the uWSGI instances the test started;
  - ports 80 / 443 on every address -> free ports on 127.0.0.1;
  - Let's Encrypt's certificate -> a throw-away self-signed one (openssl);
  - /var/log/nginx and /var/www -> folders under the test's temporary prefix;
  - the images folder of location /_images/ -> the test app's IMAGE_STORAGE.

The main config around it uses the worker_connections and
worker_rlimit_nofile that deploy/nginx.conf's header recommends.

It then wraps the result in a minimal main config (own pid file, temp paths
and logs under the prefix: no root needed, nothing touched outside the
prefix) and runs `nginx -p PREFIX -c CONF -e ERRLOG -g 'daemon off;'` in the
foreground, in its own process group so that stopping it never leaves a
worker behind.

Used by tests/live/conftest.py; `python -m tests.support.nginx_harness` renders a
config into a temp folder and runs `nginx -t` on it (a quick manual check).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_CONF = REPO / "deploy" / "nginx.conf"

# The helper's assigned port range; CI and other machines may move it.
PORT_RANGE = os.environ.get("E2E_PORT_RANGE", "18000-18999")


class HarnessError(RuntimeError):
    """Nginx could not be found, configured or started."""


def find_nginx() -> str | None:
    """Path of the nginx binary, or None. Debian installs it in /usr/sbin,
    which is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def free_port(exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """A port in PORT_RANGE that nothing listens on right now (127.0.0.1)."""
    low, high = (int(x) for x in PORT_RANGE.split("-"))
    candidates = list(range(low, high + 1))
    random.shuffle(candidates)
    for port in candidates:
        if port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise HarnessError(f"no free port in {PORT_RANGE}")


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on host:port.

    Gives up after `timeout` seconds, or as soon as `proc` (the process that
    should be listening) has exited, since then waiting longer cannot help.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"process {proc.args!r} exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise HarnessError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def make_self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost that clients can be told to trust
    (requests: verify=cert; newman: --ssl-extra-ca-certs cert)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise HarnessError(
            f"deploy/nginx.conf: expected exactly one {old!r}, found {count}; "
            "update tests/support/nginx_harness.py together with the config"
        )
    return text.replace(old, new)


def render_site(
    site_conf: str,
    *,
    backends: list[str],
    http_port: int,
    https_port: int,
    cert: Path,
    key: Path,
    prefix: Path,
    images_dir: Path | None = None,
) -> str:
    """The production server blocks, rewritten for a local test run.

    `backends` are upstream addresses as Nginx writes them: "127.0.0.1:18001"
    or "unix:/path/to.sock". `images_dir`: the folder X-Accel-Redirect'ed
    images are served from (the app's IMAGE_STORAGE); default PREFIX/images.
    """
    if not backends:
        raise ValueError("at least one backend is needed")
    servers = "\n    ".join(f"server {b};" for b in backends)
    text = site_conf
    text = _replace_once(text, "server unix:/run/stores-api/uwsgi.sock;", servers)
    text = _replace_once(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = _replace_once(text, "listen [::]:80;", "")
    text = _replace_once(text, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    text = _replace_once(text, "listen [::]:443 ssl;", "")
    text = _replace_once(text, "/etc/letsencrypt/live/api.example.com/fullchain.pem", str(cert))
    text = _replace_once(text, "/etc/letsencrypt/live/api.example.com/privkey.pem", str(key))
    text = _replace_once(text, "/var/log/nginx/stores-api.access.log", str(prefix / "logs" / "access.log"))
    text = _replace_once(text, "/var/log/nginx/stores-api.error.log", str(prefix / "logs" / "error.log"))
    text = _replace_once(text, "root /var/www/letsencrypt;", f"root {prefix / 'acme'};")
    text = _replace_once(text, "alias /var/lib/stores-api/images/;", f"alias {images_dir or prefix / 'images'}/;")
    return text


def recommended_main_settings(site_conf: str) -> tuple[int, int]:
    """(worker_connections, worker_rlimit_nofile) as deploy/nginx.conf's header
    comment tells the operator to set them in /etc/nginx/nginx.conf, so the
    tests run with the documented sizing, not a number of their own."""
    connections = re.search(r"^#\s+events \{ worker_connections (\d+); \}", site_conf, re.M)
    rlimit = re.search(r"^#\s+worker_rlimit_nofile (\d+);", site_conf, re.M)
    if not (connections and rlimit):
        raise HarnessError(
            "deploy/nginx.conf: the comment recommending worker_connections and "
            "worker_rlimit_nofile is gone; update tests/support/nginx_harness.py with it"
        )
    return int(connections.group(1)), int(rlimit.group(1))


def render_main(prefix: Path, site_path: Path) -> str:
    """A main nginx.conf that keeps every file Nginx writes under `prefix`."""
    connections, rlimit = recommended_main_settings(PRODUCTION_CONF.read_text())
    return f"""\
# Rendered by tests/support/nginx_harness.py for one test run; not for production.
worker_processes 1;
worker_rlimit_nofile {rlimit};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;

events {{
    worker_connections {connections};
}}

http {{
    default_type application/octet-stream;
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    include {site_path};
}}
"""


@dataclass
class NginxServer:
    """deploy/nginx.conf running in the foreground for a test.

    Use as a context manager (`with NginxServer([...]) as nginx:`) or call
    start()/stop() yourself; stop() is safe to call twice.
    """

    backends: list[str]
    prefix: Path | None = None
    # The app's file:// IMAGE_STORAGE folder, for location /_images/.
    images_dir: Path | None = None
    http_port: int = 0
    https_port: int = 0
    # Set by prepare(): the main config, the test certificate and its key,
    # and the nginx command line without its last arguments.
    conf: Path | None = field(default=None, init=False)
    cert: Path | None = field(default=None, init=False)
    key: Path | None = field(default=None, init=False)
    proc: subprocess.Popen | None = field(default=None, init=False)
    _cmd: list[str] = field(default_factory=list, init=False)
    _own_prefix: bool = field(default=False, init=False)

    def prepare(self) -> Path:
        """Render the config (and certificate) into the prefix; return the
        main config's path. Runs no server."""
        nginx = find_nginx()
        if nginx is None:
            raise HarnessError("nginx is not installed (bash deploy/install-tools.sh installs it)")
        if self.prefix is None:
            self.prefix = Path(tempfile.mkdtemp(prefix="stores-api-nginx-"))
            self._own_prefix = True
        for sub in ("logs", "tmp", "acme", "conf"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        # Worker processes run as `nobody` when the master is root: let them
        # reach the temp folders Nginx creates under the prefix.
        os.chmod(self.prefix, 0o755)
        if not self.https_port:
            self.https_port = free_port()
        if not self.http_port:
            self.http_port = free_port(exclude={self.https_port})
        self.cert, self.key = make_self_signed_cert(self.prefix / "conf")
        site = render_site(
            PRODUCTION_CONF.read_text(),
            backends=self.backends,
            http_port=self.http_port,
            https_port=self.https_port,
            cert=self.cert,
            key=self.key,
            prefix=self.prefix,
            images_dir=self.images_dir,
        )
        site_path = self.prefix / "conf" / "stores-api.conf"
        site_path.write_text(site)
        self.conf = self.prefix / "conf" / "nginx.conf"
        self.conf.write_text(render_main(self.prefix, site_path))
        self._cmd = [nginx, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.prefix / "logs" / "error.log")]
        return self.conf

    def test_config(self) -> str:
        """`nginx -t` on the rendered config; returns its output, raises on failure."""
        if self.conf is None:
            self.prepare()
        result = subprocess.run(self._cmd + ["-t"], capture_output=True, text=True)
        if result.returncode != 0:
            raise HarnessError(f"nginx -t failed:\n{result.stderr}")
        return result.stderr

    def start(self, timeout: float = 10.0) -> NginxServer:
        if self.conf is None:
            self.prepare()
        self.proc = subprocess.Popen(
            self._cmd + ["-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # own process group: stop() reaches the workers too
        )
        try:
            wait_for_port(self.https_port, timeout, self.proc)
            wait_for_port(self.http_port, timeout, self.proc)
        except HarnessError as exc:
            self.stop()
            raise HarnessError(f"{exc}\n--- nginx error log ---\n{self.error_log()}") from None
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # SIGTERM is Nginx's fast shutdown; the group kill afterwards
            # catches a worker that outlived its master for any reason.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if proc.stderr:
                proc.stderr.close()

    def cleanup(self) -> None:
        """Stop, and remove the prefix if this object made it."""
        self.stop()
        if self._own_prefix and self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def error_log(self) -> str:
        path = (self.prefix or Path("/nonexistent")) / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else "(no error log)"

    @property
    def base_url(self) -> str:
        """The API's HTTPS address through Nginx (trust `self.cert`)."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


if __name__ == "__main__":
    # Manual check: render against a placeholder backend and run `nginx -t`.
    server = NginxServer(["127.0.0.1:9"])
    try:
        print(server.prepare())
        print(server.test_config(), end="")
    finally:
        server.cleanup()
