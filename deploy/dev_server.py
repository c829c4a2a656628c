"""`make run`: the real server (`uwsgi --ini uwsgi.ini`), with a readable start.

uWSGI opens with ~45 lines of banner, and the address a newcomer wants is
buried among warnings they cannot judge. This runs the very same command and
reads its output:

- the banner lines listed in NOISE are held back, and one line is printed
  instead once a worker has loaded the app:
      Stores API serving on http://127.0.0.1:5000 - docs at http://127.0.0.1:5000/docs
- everything else (the app's log, tracebacks, errors) passes through as is;
- if uWSGI stops before it ever served, the held-back lines are printed too,
  since one of them may say why.

The warnings it hides, and why they are safe to ignore here:
- "no internal routing support, rebuild with pcre": uwsgi.ini uses no
  internal routing.
- "running as root" (only when you are root): fine on a development machine;
  the production unit (deploy/stores-api.service) runs as its own user.
- "harakiri without post buffering": the app reads bodies itself and refuses
  oversized ones before reading them; post-buffering would read every body
  first.

Ctrl-C: the terminal sends SIGINT to make, to this script and to every uWSGI
process at once. This script ignores it and waits for uWSGI to finish
stopping (uwsgi.ini and wsgi.py make that take about a second), then
exits 0. tests/live/test_make_run.py checks both the line and Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UWSGI = Path(sys.executable).parent / "uwsgi"

# Startup lines that say nothing a developer must act on.
NOISE = re.compile(
    "|".join(
        [
            r"^\[uWSGI\] getting INI configuration",
            r"^\*\*\* Starting uWSGI",
            r"^compiled with version",
            r"^os: ",
            r"^nodename: ",
            r"^machine: ",
            r"^clock source: ",
            r"^detected number of CPU cores",
            r"^current working directory",
            r"^detected binary path",
            r"no internal routing support",
            r"running as root",
            r"you are running uWSGI as root",
            r"^chdir\(\) to ",
            r"^your processes number limit",
            r"^your memory page size",
            r"harakiri without post buffering",
            r"^detected max file descriptor number",
            r"^lock engine: ",
            r"^thunder lock: ",
            r"^uwsgi shared socket \d+ bound to ",
            r"^uwsgi socket \d+ bound to ",
            r"^Python version: ",
            r"^Python main interpreter initialized",
            r"^python threads support enabled",
            r"^your server socket listen backlog",
            r"^your mercy for graceful operations",
            r"^mapped \d+ bytes",
            r"^\*\*\* Operational MODE",
            r"^spawned uWSGI ",
            r"^running \"unix_signal:",  # uwsgi.ini's signal hooks, master-start and post-fork
            r"^\*\*\* uWSGI is running in multiple interpreter mode",
            r"^WSGI app 0 \(mountpoint=''\) ready",
        ]
    )
)
READY = re.compile(r"^WSGI app 0 \(mountpoint=''\) ready")
BOUND = re.compile(r"^uwsgi shared socket \d+ bound to TCP address (\S+) fd")


def local_url(bound: str) -> str:
    """http://host:port for the address uWSGI reports ("127.0.0.1:5000" or ":8000")."""
    host, _, port = bound.rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):
        host = "127.0.0.1"  # listening on every address; this one works locally
    return f"http://{host}:{port}"


# uWSGI 2.0 loses a Ctrl-C that reaches a worker between its fork and its
# signal handlers (uwsgi.ini's hook-post-fork), and its master then waits for
# that worker for ever. A second Ctrl-C ends it: this script sends one to the
# master and then to its children when uWSGI is still there this long after
# the first.
SECOND_CTRL_C_AFTER = 1.0


def ctrl_c_again(pid: int) -> None:
    """SIGINT to uWSGI's master (which starts its shutdown, if the first one
    came before it could), then to every child it has (workers, mules)."""
    try:
        os.kill(pid, signal.SIGINT)
    except OSError:
        return
    time.sleep(0.1)  # the master first: a worker it sees die is then not replaced
    ctrl_c_children(pid)


def ctrl_c_children(pid: int) -> None:
    """SIGINT to every process whose parent is `pid` (uWSGI's workers and mules)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                os.kill(int(entry), signal.SIGINT)
        except (OSError, ValueError):
            pass  # gone meanwhile


def main() -> int:
    interrupted = False
    proc = None

    def second_ctrl_c():
        if proc is not None and proc.poll() is None:
            ctrl_c_again(proc.pid)

    def on_sigint(signum, frame):
        nonlocal interrupted
        if not interrupted:  # uWSGI got the same Ctrl-C; wait for it to stop
            interrupted = True
            timer = threading.Timer(SECOND_CTRL_C_AFTER, second_ctrl_c)
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGINT, on_sigint)
    if interrupted:  # before uWSGI started: nothing to stop
        print("Stopped.")
        return 0
    proc = subprocess.Popen(
        [str(UWSGI), "--ini", "uwsgi.ini", *sys.argv[1:]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    held, url, ready = [], None, False
    for line in proc.stdout:
        bound = BOUND.match(line)
        if bound:
            url = local_url(bound.group(1))
        if not ready and READY.match(line):
            ready = True
            print(f"Stores API serving on {url} - docs at {url}/docs  (Ctrl-C to stop)", flush=True)
            continue
        if not ready and NOISE.search(line):
            held.append(line)
            continue
        if READY.match(line):
            continue  # the other workers' "ready": the line above said it
        sys.stdout.write(line)
        sys.stdout.flush()
    code = proc.wait()
    if not ready and not interrupted:
        sys.stdout.write("".join(held))
    if interrupted:
        print("Stopped.")
        return 0
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
