"""Property-based fuzzing of the live API against its OpenAPI document.

The real server (uWSGI with the project's uwsgi.ini, two workers, PostgreSQL)
serves the API; schemathesis loads the document the server publishes at
/openapi.json, generates requests from it (valid and invalid ones, and chains
of calls that follow the document's links) and checks every answer: no 5xx,
the status code is documented, the body matches the documented schema and
content type, documented headers are right, a protected operation refuses a
missing token, an undocumented method gets 405 with a right Allow header, and
a created or deleted resource is there or gone afterwards (the checks are
listed in schemathesis.toml). Any failure fails this test; schemathesis's
report in the output shows each failing request as a curl line.

Size of the run (environment variables):
- FUZZ_MAX_EXAMPLES: cases per operation and phase (default 300, about a
  minute; `make fuzz` raises it).
- FUZZ_MAX_TIME: seconds schemathesis may spend (default: no limit, the example
  count bounds it). With a limit, fuzzing and stateful testing repeat until it
  is spent: that is how `make fuzz` runs long.
- FUZZ_SEED: the seed (default: a fixed one, so `make test` runs the same cases
  each time); `random` for a new one each run; or the seed a failed run printed,
  to replay it.
- FUZZ_DATABASE_URL: the PostgreSQL database to wipe and use (default: a fresh
  database `stores_fuzz` on the suite's PostgreSQL server). Without PostgreSQL
  the test is skipped, and fails under CI=true.
- FUZZ_PORT: the port for the server (default: any free port).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy

from config import database_url as sqlalchemy_url
from tests.support import services
from tests.support.live_server import ROOT, LiveServer

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
    subprocess.run(
        [str(BIN / "flask"), "--app", "app", "make-admin", username],
        cwd=ROOT,
        env=server.env,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def database_url():
    # A database of its own: the other tests keep theirs ("test") migrated.
    # Both calls skip (or fail under CI=true) when PostgreSQL is not there.
    url = os.environ.get("FUZZ_DATABASE_URL")
    if url:
        services.reset_postgres(url)
        return url
    return services.scratch_database("stores_fuzz")


@pytest.fixture(scope="module")
def server(database_url):
    server = start_server(database_url)
    try:
        yield server
    finally:
        server.stop()


# The fuzzing users' ids: far from the small ids and the int32 bounds that
# generated user_id values favour, so fuzzing never deletes them.
FUZZ_USER_IDS_FROM = 1_500_000_000


def set_next_user_id(database_url, next_id):
    engine = sqlalchemy.create_engine(sqlalchemy_url(database_url))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n, false)"), {"n": next_id})
    engine.dispose()


def make_fuzz_users(server, database_url):
    """A session per role that schemathesis.toml hands out (see there why),
    as the environment variables it reads them from."""
    url = server.url
    set_next_user_id(database_url, FUZZ_USER_IDS_FROM)
    register(url, "fuzzer")
    register(url, "fuzz-admin")
    set_next_user_id(database_url, 1)
    make_admin(server, "fuzz-admin")
    fuzzer = login(url, "fuzzer")
    # A few stores with small ids, so that generated item bodies (whose
    # store_id favours small numbers) often name a store and get created.
    for n in range(1, 4):
        response = requests.post(
            f"{url}/store/fuzz-store-{n}", timeout=10, headers={"Authorization": f"Bearer {fuzzer['access_token']}"}
        )
        assert response.status_code == 201, response.text
    return {
        "FUZZ_ACCESS_TOKEN": fuzzer["access_token"],
        "FUZZ_REFRESH_TOKEN": fuzzer["refresh_token"],
        "FUZZ_LOGOUT_TOKEN": login(url, "fuzzer")["access_token"],
        "FUZZ_ADMIN_TOKEN": login(url, "fuzz-admin")["access_token"],
    }


@pytest.fixture(scope="module")
def tokens(server, database_url):
    return make_fuzz_users(server, database_url)


# `make test` replays the same cases every run (a failure there is a
# regression, not bad luck); FUZZ_SEED=random, as `make fuzz` sets, explores.
DEFAULT_SEED = "20261124"


def schemathesis_command(url):
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--max-examples",
        os.environ.get("FUZZ_MAX_EXAMPLES", "300"),
        # One worker: with threads, CPython 3.11's ast.parse (which hypothesis
        # calls) can fail with "AST constructor recursion depth mismatch"
        # (python/cpython#106905), which schemathesis reports as an error.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
    ]
    seed = os.environ.get("FUZZ_SEED", DEFAULT_SEED)
    if seed != "random":
        command += ["--seed", seed]
    if os.environ.get("FUZZ_MAX_TIME"):
        command += ["--max-time", os.environ["FUZZ_MAX_TIME"]]
    return command


def test_live_api_conforms_to_its_openapi_document(server, tokens, tmp_path):
    # A stuck server must not hang the suite: the run itself takes about a
    # minute at the default size.
    limit = int(os.environ.get("FUZZ_MAX_TIME") or 600) + 300
    # Not captured here: pytest captures the output (and shows it with the
    # failure, or live with -s), so a long `make fuzz` run shows its progress.
    result = subprocess.run(schemathesis_command(server.url), cwd=tmp_path, env={**os.environ, **tokens}, timeout=limit)
    assert result.returncode == 0, (
        f"schemathesis found failures (exit {result.returncode}); its report, "
        "with a curl line for each failing request, is in the captured output above"
    )
