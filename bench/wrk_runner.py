"""Run wrk and turn its text report into numbers.

wrk is the Debian package (bench/install-wrk.sh installs it). Every run uses
the same shape: THREADS threads, CONNECTIONS connections, `--latency` for the
percentiles, and a fixed duration. Headers go in with -H; a request with a
body (POST /login) needs a Lua script (bench/login.lua).

What is parsed from wrk's report:
- "N requests in 10.00s" and "Requests/sec: X";
- the "Latency Distribution" block (50% and 99%);
- "Non-2xx or 3xx responses: N" (absent when there were none);
- "Socket errors: connect A, read B, write C, timeout D" (absent when none).
"""

import re
import shutil
import subprocess
from dataclasses import dataclass

THREADS = 2
CONNECTIONS = 32
# A request slower than this counts as a wrk "timeout" socket error. Generous:
# login is deliberately slow (argon2) and queues 16 deep per worker.
TIMEOUT = "10s"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # wrk's "Non-2xx or 3xx responses"
    socket_errors: dict  # connect/read/write/timeout -> count
    text: str  # wrk's report as printed

    @property
    def socket_error_total(self):
        return sum(self.socket_errors.values())


def wrk_path():
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is not installed: run `bash bench/install-wrk.sh` (or `make bench`).")
    return path


def wrk_version():
    # `wrk -v` prints its version line and the usage, then exits 1.
    result = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0].strip()


def run_wrk(url, seconds, headers=(), script=None, script_args=()):
    command = [
        wrk_path(),
        "-t",
        str(THREADS),
        "-c",
        str(CONNECTIONS),
        "-d",
        f"{seconds}s",
        "--timeout",
        TIMEOUT,
        "--latency",
    ]
    for header in headers:
        command += ["-H", header]
    if script:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    # wrk stops itself after `seconds`; the timeout only guards against a hang.
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse_wrk(result.stdout)


def parse_wrk(text):
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.M)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if not done or not rate:
        raise ValueError(f"not a wrk report:\n{text}")
    percentiles = {}
    for percent, value, unit in re.findall(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        percentiles[percent] = float(value) * _UNITS_MS[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = dict(
        zip(
            ("connect", "read", "write", "timeout"),
            (int(n) for n in errors.groups()) if errors else (0, 0, 0, 0),
            strict=True,
        )
    )
    return WrkResult(
        requests=int(done.group(1)),
        seconds=float(done.group(2)) * _UNITS_MS[done.group(3)] / 1000.0,
        requests_per_second=float(rate.group(1)),
        # No requests finished -> no latency block; NaN shows up as "n/a" in the table.
        p50_ms=percentiles.get("50", float("nan")),
        p99_ms=percentiles.get("99", float("nan")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
        text=text,
    )
