"""Heroku's way in: the Procfile, run by honcho (a Python foreman).

Heroku runs the `release` process (migrations) before it starts `web`, with a
`postgres://` DATABASE_URL and PORT in the environment. honcho stops every
process as soon as one exits, so the two are started one after the other,
as Heroku does: `honcho start release`, then `honcho start web`.
"""

import os
import re
import signal
import subprocess

import pytest
import requests
import sqlalchemy

from config import database_url as sqlalchemy_url
from tests.live.conftest import ROOT, app_env
from tests.support.nginx_harness import free_port, wait_for_port

pytestmark = pytest.mark.live


def tables(url):
    engine = sqlalchemy.create_engine(sqlalchemy_url(url))
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_procfile_release_then_web(empty_database, honcho_bin, tmp_path):
    port = free_port()
    # The scheme Heroku's DATABASE_URL has; the app must accept it.
    heroku_url = "postgres://" + empty_database.split("://", 1)[1]
    env = app_env(heroku_url, PORT=str(port))
    # An empty env file: a developer's .env must not change what runs.
    no_dotenv = tmp_path / "empty.env"
    no_dotenv.write_text("")
    honcho = [str(honcho_bin), "--env", str(no_dotenv)]

    assert "users" not in tables(empty_database)
    release = subprocess.run(
        [*honcho, "start", "release"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert release.returncode == 0, release.stdout + release.stderr
    assert {"users", "stores", "items"} <= tables(empty_database)

    log_path = tmp_path / "honcho-web.log"
    with open(log_path, "w") as log:
        web = subprocess.Popen(
            [*honcho, "start", "web"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_port(port, 30, web)
        url = f"http://127.0.0.1:{port}"
        http = requests.Session()
        http.trust_env = False
        for _ in range(100):  # lazy workers may still be loading the app
            if http.get(f"{url}/health/ready", timeout=5).status_code == 200:
                break
        credentials = {"username": "heroku_user", "password": "heroku-password"}
        registered = http.post(f"{url}/register", json=credentials, timeout=10)
        assert registered.status_code == 201, registered.text
        login = http.post(f"{url}/login", json=credentials, timeout=10)
        assert login.status_code == 200, login.text
        assert set(login.json()) == {"access_token", "refresh_token", "device_token"}
    finally:
        # honcho forwards SIGTERM to the process group of each process it runs.
        try:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        # Whatever honcho left behind: its own group, and the group of the web
        # process it started in a session of its own.
        groups = [web.pid] + [int(pid) for pid in re.findall(r"web\.1 started \(pid=(\d+)\)", log_path.read_text())]
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        web.wait()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
