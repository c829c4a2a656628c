"""Start and stop one uWSGI server for the benchmark, and read its CPU and memory from /proc.

Both the real app and bench/bare_app.py are served by the project's own
uwsgi.ini, with only what a benchmark must pin given on the command line
(uWSGI lets a later command-line option override the ini; UWSGI_* environment
variables do not, they are read before the ini):

    .venv/bin/uwsgi --ini uwsgi.ini --processes 2 --threads 1 --disable-logging [extra]

CPU time is read from /proc/<pid>/stat (utime + stime, in clock ticks) for the
master and every live child, plus the master's cutime + cstime, which holds
the CPU of children it has already reaped -- so a worker recycled by
max-requests during a run is still counted.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import requests

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROJECT_DIR = Path(__file__).resolve().parent.parent
# The servers' virtualenv: BENCH_VENV, e.g. one with only requirements.txt
# installed, to measure memory as production has it (the development
# requirements add modules the workers import, e.g. cryptography via PyJWT).
VENV = Path(os.environ.get("BENCH_VENV") or PROJECT_DIR / ".venv")

# uWSGI logs each (re)spawn; the last pid logged per worker number is the live one.
_SPAWNED = re.compile(r"spawned uWSGI worker (\d+) \(pid: (\d+)")
_RESPAWNED = re.compile(r"Respawned uWSGI worker (\d+) \(new pid: (\d+)\)")


def migrate(env):
    """`flask db upgrade` with `env`: the schema, as `make run` and Heroku's release build it."""
    subprocess.run(
        [str(VENV / "bin" / "flask"), "--app", "app", "db", "upgrade"],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
        capture_output=True,
    )


class UwsgiServer:
    """One uWSGI master and its workers, started from uwsgi.ini in `project_dir`."""

    def __init__(self, name, project_dir, port, env, log_path, extra_args=(), processes=2, threads=1, section=""):
        self.name = name
        self.project_dir = Path(project_dir)
        self.port = port
        # The private socket to the workers goes beside the log, not into the instance folder.
        self.env = dict(env, PORT=str(port), RUNTIME_DIR=str(Path(log_path).parent))
        self.log_path = Path(log_path)
        self.args = [
            str(VENV / "bin" / "uwsgi"),
            "--ini",
            str(self.project_dir / "uwsgi.ini") + (f":{section}" if section else ""),
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--disable-logging",
            *extra_args,
        ]
        self.process = None
        # With lazy-apps each worker loads the app itself (one "WSGI app 0 ... ready"
        # line per worker); without it the master loads it once before forking.
        ini = (self.project_dir / "uwsgi.ini").read_text()
        self.lazy_apps = bool(re.search(r"^\s*lazy-apps\s*=\s*(true|1|yes|on)\s*$", ini, re.M))

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path="/health", timeout=60):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        # A session of its own, so stop() can signal exactly this server's processes.
        self.process = subprocess.Popen(
            self.args,
            cwd=self.project_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: uWSGI exited with {self.process.returncode}; see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if requests.get(self.base_url + ready_path, timeout=2).status_code == 200:
                    if self._all_workers_ready():
                        return self
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or its workers are still loading the app
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name}: not ready after {timeout} s; see {self.log_path}:\n{self.log_tail()}")

    def _all_workers_ready(self):
        workers = len(self.worker_pids())
        loaded = self.log_path.read_text(errors="replace").count("WSGI app 0")
        return workers >= 1 and loaded >= (workers if self.lazy_apps else 1)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT: uWSGI's "shut down now" (SIGTERM would mean reload without die-on-term).
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- /proc readings -------------------------------------------------

    def worker_pids(self):
        """The live workers' pids, by worker number, from uWSGI's own log."""
        workers = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = _SPAWNED.search(line) or _RESPAWNED.search(line)
            if match:
                workers[int(match.group(1))] = int(match.group(2))
        return workers

    def respawn_count(self):
        return len(_RESPAWNED.findall(self.log_path.read_text(errors="replace")))

    def cpu_ticks(self):
        """CPU used so far by the master, its live children and its reaped children."""
        master = self.process.pid
        fields = _stat_fields(master)
        total = sum(int(fields[i]) for i in (_UTIME, _STIME, _CUTIME, _CSTIME))
        for pid in _children(master):
            child = _stat_fields(pid)
            if child:
                total += int(child[_UTIME]) + int(child[_STIME])
        return total

    def wait_idle(self, quiet=0.3, timeout=30):
        """Wait until the server burns no CPU for `quiet` seconds. When wrk
        stops, requests it already sent are still queued in the listen
        backlog and the workers finish them: e.g. 32 logins, 0.8 s of CPU.
        That work must not be billed to the next run, nor be in flight (an
        argon2 buffer of 19 MiB) when RSS is read."""
        deadline = time.monotonic() + timeout
        before = self.cpu_ticks()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.cpu_ticks()
            if now == before:
                return
            before = now

    def worker_rss_kib(self):
        """Resident memory of each live worker, in KiB (VmRSS)."""
        result = {}
        for number, pid in sorted(self.worker_pids().items()):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        result[number] = int(line.split()[1])
            except FileNotFoundError:
                pass  # recycled between the log line and now
        return result


def process_ticks(pid):
    """CPU used so far by one process (utime + stime, clock ticks); 0 once it is gone."""
    fields = _stat_fields(pid)
    return int(fields[_UTIME]) + int(fields[_STIME]) if fields else 0


# Indices into /proc/<pid>/stat after the "(comm)" field, which may hold spaces:
# fields[0] is state (field 3 in proc(5)), so field N is fields[N - 3].
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 4 - 3, 14 - 3, 15 - 3, 16 - 3, 17 - 3


def _stat_fields(pid):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(parent):
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[_PPID]) == parent:
                yield int(entry.name)
