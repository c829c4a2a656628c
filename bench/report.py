"""Turn the benchmark's measurements into one table per backend, the verdict
on each target of issue 19 (and issue 6's p99 bound), and bench/RESULTS.md
(with the machine and versions)."""

import datetime
import importlib.metadata
import math
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import uwsgi_server

# The numbers for the course's implementation on this kind of machine,
# by (endpoint, size): shown beside ours for orientation, not as targets.
COURSE_RPS = {
    ("items", "10"): 548,
    ("items", "1000"): 8.4,
    ("stores", "10"): 520,
    ("stores", "1000"): 10.6,
    ("item", "10"): 1305,
    ("item", "1000"): 1406,
    ("login", "10"): 166,
    ("login", "1000"): 165,
}

# Targets (issue 19): req/s as a share of the bare app serving the same bytes
# on a plain --http-socket, at 1,000 items, by backend.
MIN_RATIO = {
    "sqlite": {"item": 0.40, "items": 0.50, "stores": 0.50},
    "postgresql": {"item": 0.25, "items": 0.40, "stores": 0.40},
}
LIST_MAX_P99_MS = 100.0  # issue 6
MAX_WORKER_RSS_MIB = 70.0
# OWASP password storage cheat sheet: argon2id with one of these (memory KiB,
# iterations) pairs, parallelism 1. Each pair is the same strength.
OWASP_ARGON2ID = [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)]

HEADER = [
    "server",
    "endpoint",
    "data",
    "body B",
    "req/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "socket errors",
    "CPU ms/req",
    "DB CPU ms/req",
    "recycled",
    "others",
    "bare req/s",
    "× bare",
    "× bare CPU",
]


def _num(value, digits=1):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _socket_errors(result):
    parts = [f"{kind} {count:,}" for kind, count in result.socket_errors.items() if count]
    return ", ".join(parts) or "0"


@dataclass
class Section:
    """One backend's runs: its table, targets and memory."""

    title: str
    backend: str  # a key of MIN_RATIO
    measurements: list
    comparators: dict  # id(app measurement) -> its bare measurement
    rss_by_server: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def table(measurements, comparators):
    """A Markdown table: one row per wrk run. `comparators` maps a measurement
    to its bare counterpart (or None)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for m in measurements:
        bare = comparators.get(id(m))
        bare_rps = f"{_num(bare.result.requests_per_second)} ({m.compare_with})" if bare else ""
        ratio = f"{m.result.requests_per_second / bare.result.requests_per_second:.2f}" if bare else ""
        # Server CPU per request, bare over app: what the req/s ratio would be if
        # the server alone used the machine; steadier than req/s on a busy machine.
        cpu_ratio = f"{bare.cpu_ms_per_request / m.cpu_ms_per_request:.2f}" if bare else ""
        cells = [
            m.server,
            m.endpoint,
            m.size,
            _num(m.body_bytes),
            _num(m.result.requests_per_second),
            _num(m.result.p50_ms, 2),
            _num(m.result.p99_ms, 2),
            _num(m.result.non_2xx),
            _socket_errors(m.result),
            _num(m.cpu_ms_per_request, 2),
            "-" if m.db_cpu_ms_per_request is None else _num(m.db_cpu_ms_per_request, 2),
            _num(m.respawns),
            f"{m.other_load:.0%}",
            bare_rps,
            ratio,
            cpu_ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def course_table(measurements):
    lines = ["| endpoint | data | course req/s (issue) | this project req/s |", "|---|---|---|---|"]
    for m in measurements:
        course = COURSE_RPS.get((m.endpoint_key, m.size_key))
        if m.server == "app" and course is not None:
            lines.append(f"| {m.endpoint} | {m.size} | {_num(float(course))} | {_num(m.result.requests_per_second)} |")
    return "\n".join(lines)


def _verdict(ok):
    return "**met**" if ok else "**MISSED**"


def targets(section, argon2_info=None):
    """One line per target: what was measured and whether it is met."""
    measurements, comparators, rss_by_server = section.measurements, section.comparators, section.rss_by_server
    goals = MIN_RATIO.get(section.backend, {})
    lines = []
    for m in measurements:
        bare = comparators.get(id(m))
        if m.server != "app" or bare is None or m.size_key != "1000" or m.endpoint_key not in goals:
            continue
        ratio = m.result.requests_per_second / bare.result.requests_per_second
        cpu_ratio = bare.cpu_ms_per_request / m.cpu_ms_per_request
        # Say when other processes took a share of the machine during either run:
        # then req/s (and p99) say more about them than about the app.
        busiest = max(m.other_load, bare.other_load)
        context = f"; CPU ratio {cpu_ratio:.2f}x; other processes used up to {busiest:.0%} of the CPU during these runs"
        goal = goals[m.endpoint_key]
        if m.endpoint_key == "item":
            lines.append(
                f"- {m.endpoint}, {m.size}: {ratio:.2f}x the bare app's bytes "
                f"(target >= {goal:.2f}x){context}: {_verdict(ratio >= goal)}"
            )
        else:
            ok = ratio >= goal and m.result.p99_ms < LIST_MAX_P99_MS
            lines.append(
                f"- {m.endpoint}, {m.size}: {ratio:.2f}x the bare app's json.dumps "
                f"(target >= {goal:.2f}x), p99 {m.result.p99_ms:.1f} ms "
                f"(target < {LIST_MAX_P99_MS:.0f} ms){context}: {_verdict(ok)}"
            )
    for m in measurements:
        if m.endpoint_key == "login":
            lines.append(
                f"- POST /login, {m.size}: {m.result.requests_per_second:,.1f} req/s, "
                f"{m.cpu_ms_per_request:.1f} ms server CPU per login, "
                f"p50 {m.result.p50_ms:.0f} ms at {32} connections"
            )
    if argon2_info:
        lines.append(
            f"- Password hashing: {argon2_info['summary']}; one verify takes "
            f"{argon2_info['verify_ms']:.1f} ms in one process (median of "
            f"{argon2_info['samples']}); OWASP minimum or above: "
            f"{_verdict(argon2_info['owasp_ok'])}"
        )
    for server, workers in rss_by_server.items():
        if not server.startswith("app"):
            continue
        worst = max(workers.values()) / 1024 if workers else float("nan")
        listed = ", ".join(f"{kib / 1024:.1f}" for kib in workers.values())
        lines.append(
            f"- Worker RSS after the benchmark ({server}): {listed} MiB "
            f"(target <= {MAX_WORKER_RSS_MIB:.0f} MiB): {_verdict(worst <= MAX_WORKER_RSS_MIB)}"
        )
    bad = [m for m in measurements if m.result.non_2xx or m.result.socket_error_total]
    if bad:
        detail = "; ".join(
            f"{m.server} {m.endpoint} {m.size}: non-2xx {m.result.non_2xx:,}, socket errors {_socket_errors(m.result)}"
            for m in bad
        )
        lines.append(f"- Zero non-2xx and zero socket errors in every run: {_verdict(False)} ({detail})")
    else:
        lines.append(f"- Zero non-2xx and zero socket errors in every run: {_verdict(True)}")
    return "\n".join(lines)


def argon2_summary(hash_text, password, samples=5):
    """The argon2 parameters in a stored hash, whether they meet OWASP's
    minimum, and how long one verification takes here."""
    import time

    import argon2

    params = argon2.extract_parameters(hash_text)
    hasher = argon2.PasswordHasher.from_parameters(params)
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        hasher.verify(hash_text, password)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    owasp_ok = (
        params.type is argon2.Type.ID
        and params.parallelism >= 1
        and any(params.memory_cost >= m and params.time_cost >= t for m, t in OWASP_ARGON2ID)
    )
    return {
        "summary": (
            f"argon2{params.type.name.lower()} m={params.memory_cost} KiB, t={params.time_cost}, p={params.parallelism}"
        ),
        "verify_ms": timings[len(timings) // 2],
        "samples": samples,
        "owasp_ok": owasp_ok,
    }


def machine():
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "CPU": cpu_model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
    }


def servers_dist(name):
    """A distribution's version in the servers' virtualenv, or "not installed"."""
    found = subprocess.run(
        [
            str(uwsgi_server.VENV / "bin" / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({name!r}))",
        ],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() if found.returncode == 0 else "not installed"


def versions(wrk_version):
    def dist(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    uwsgi = subprocess.run(
        [str(uwsgi_server.VENV / "bin" / "uwsgi"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "Python": platform.python_version(),
        "uWSGI": uwsgi,
        "Flask": dist("Flask"),
        "Werkzeug": dist("Werkzeug"),
        "Flask-RESTful": dist("Flask-RESTful"),
        "Flask-JWT-Extended": dist("Flask-JWT-Extended"),
        "SQLAlchemy": dist("SQLAlchemy"),
        "argon2-cffi": dist("argon2-cffi"),
        "orjson": dist("orjson"),
        # Not a runtime requirement, but PyJWT imports it whenever it is
        # installed (the dev venv has it): part of every worker's RSS. Asked
        # of the servers' virtualenv (BENCH_VENV), not this script's.
        "cryptography": servers_dist("cryptography")
        + (
            " (installed: PyJWT imports it, about 10 MiB of each worker's RSS)"
            if servers_dist("cryptography") != "not installed"
            else ""
        ),
        "SQLite": sqlite3.sqlite_version,
        "wrk": wrk_version,
    }


def results_markdown(title, settings, sections, argon2_info, machine_info, version_info):
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# {title}",
        "",
        f"Written by `make bench` (bench/run.py) on {now}. How to read it: bench/README.md.",
        "",
        "## Machine and versions",
        "",
        *(f"- {key}: {value}" for key, value in machine_info.items()),
        *(f"- {key}: {value}" for key, value in version_info.items()),
        "",
        "## Settings",
        "",
        *(f"- {line}" for line in settings),
        "",
        "`× bare` is req/s over the bare app's req/s for the same body (issue 19's targets): served as "
        "it is (`bytes`) for `GET /item/<name>`, `json.dumps`'ed on every request (`dumps`) for the lists, "
        "which must serialise theirs.",
        "",
    ]
    for index, section in enumerate(sections):
        rss_lines = []
        for server, workers in section.rss_by_server.items():
            listed = ", ".join(f"worker {n}: {kib / 1024:.1f} MiB" for n, kib in workers.items())
            rss_lines.append(f"- {server}: {listed}")
        parts += [
            f"## Results: {section.title}",
            "",
            table(section.measurements, section.comparators),
            "",
            f"### Targets (issue 19): {section.title}",
            "",
            targets(section, argon2_info if index == 0 else None),
            "",
            "### Memory: RSS per worker after the benchmark",
            "",
            *rss_lines,
            "",
        ]
        course = course_table(section.measurements)
        if course.count("\n") > 1:
            parts += ["### Against the course's implementation (numbers from issue 6)", "", course, ""]
        if section.notes:
            parts += ["### Notes", "", *(f"- {note}" for note in section.notes), ""]
    return "\n".join(parts)


def write_section(path, start, end, section):
    """Put `section` (which begins with the marker line `start` and ends with
    `end`) into the results file in place of the one already there, or at its
    end: each bench script owns one such section of RESULTS.md."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section.strip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    path.write_text(text)
