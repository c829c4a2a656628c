"""Property-based fuzzing of the live API against its OpenAPI document.

The real server (uWSGI with the project's uwsgi.ini, two workers, PostgreSQL)
serves the API; schemathesis loads the document the server publishes at
/openapi.json, generates requests from it (valid and invalid ones, and chains
of calls that follow the document's links) and checks every answer: no 5xx,
the status code is documented, the body matches the documented schema and
content type, documented headers are right, and a created or deleted resource
is there or gone afterwards. Any failure fails this test; the report in the
output shows the request that caused it (and a curl line to replay it).

Size of the run (environment variables):
- FUZZ_MAX_EXAMPLES: cases per operation and phase (default 25; `make fuzz` raises it).
- FUZZ_MAX_TIME: seconds schemathesis may spend (default: no limit, the example
  count bounds it). With a limit, fuzzing and stateful testing repeat until it
  is spent: that is how `make fuzz` runs long.
- FUZZ_SEED: replay a run with the seed its output printed.
- FUZZ_DATABASE_URL: the PostgreSQL database to wipe and use (default: the
  suite's TEST_DATABASE_URL). Without PostgreSQL the test is skipped, and
  fails under CI=true.
- FUZZ_PORT: the port for the server (default: any free port).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests import services
from tests.live import ROOT, LiveServer

pytestmark = pytest.mark.live

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONFIG = HERE / "schemathesis.toml"
PASSWORD = "fuzzing-password"


def start_server(database_url):
    # Tokens must outlive a long `make fuzz` run (the default is 15 minutes).
    server = LiveServer(database_url, processes=2, extra_env={"JWT_ACCESS_TOKEN_EXPIRES": "86400"})
    port = os.environ.get("FUZZ_PORT")
    if port:
        server.port = int(port)
        server.url = f"http://127.0.0.1:{port}"
        server.env["PORT"] = port
    return server.start()


def login(url, username):
    response = requests.post(f"{url}/login", json={"username": username, "password": PASSWORD}, timeout=10)
    response.raise_for_status()
    return response.json()


def register(url, username):
    response = requests.post(f"{url}/register", json={"username": username, "password": PASSWORD}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def make_admin(server, username):
    subprocess.run([str(BIN / "flask"), "--app", "app", "make-admin", username],
                   cwd=ROOT, env=server.env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def server():
    database_url = os.environ.get("FUZZ_DATABASE_URL", services.POSTGRES_URL)
    # Skips (or fails under CI=true) when PostgreSQL is not there.
    services.reset_postgres(database_url)
    server = start_server(database_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tokens(server):
    """One session per role the schemathesis.toml hands out (see there why)."""
    url = server.url
    for name in ("fuzzer", "fuzz-admin", "fuzz-victim"):
        register(url, name)
    make_admin(server, "fuzz-admin")
    fuzzer = login(url, "fuzzer")
    return {
        "FUZZ_ACCESS_TOKEN": fuzzer["access_token"],
        "FUZZ_REFRESH_TOKEN": fuzzer["refresh_token"],
        "FUZZ_LOGOUT_TOKEN": login(url, "fuzzer")["access_token"],
        "FUZZ_VICTIM_TOKEN": login(url, "fuzz-victim")["access_token"],
        "FUZZ_ADMIN_TOKEN": login(url, "fuzz-admin")["access_token"],
    }


def schemathesis_command(url, report_dir):
    command = [
        str(BIN / "schemathesis"), "--config-file", str(CONFIG), "--no-color",
        "run", f"{url}/openapi.json",
        "--max-examples", os.environ.get("FUZZ_MAX_EXAMPLES", "25"),
        "--workers", "2",
        "--request-timeout", "10",
        "--report", "junit", "--report-dir", str(report_dir),
        "--generation-database", "none",
    ]
    if os.environ.get("FUZZ_MAX_TIME"):
        command += ["--max-time", os.environ["FUZZ_MAX_TIME"]]
    if os.environ.get("FUZZ_SEED"):
        command += ["--seed", os.environ["FUZZ_SEED"]]
    return command


def test_live_api_conforms_to_its_openapi_document(server, tokens, tmp_path):
    result = subprocess.run(
        schemathesis_command(server.url, tmp_path),
        cwd=tmp_path, env={**os.environ, **tokens}, capture_output=True, text=True,
    )
    # Shown by pytest with -s, and with the failure below.
    print(result.stdout, result.stderr, sep="\n")
    assert result.returncode == 0, f"schemathesis found failures (exit {result.returncode}):\n{result.stdout[-30000:]}"
