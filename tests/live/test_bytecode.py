"""The workers run with Python's -OO (uwsgi.ini: optimize = 2) and load the
bytecode the install compiled for it (bin/compile-optimized), so no worker
compiles at start. A probe app under the project's uwsgi.ini reports what its
worker sees; no test's worker writes bytecode (LiveServer, app_env), so what
it finds is what the install left."""

import json

import pytest
import requests

from tests.support.live_server import ROOT, LiveServer

pytestmark = pytest.mark.live

PROBE = """
import json, os, sys
import flask, sqlalchemy
sys.path.insert(0, os.environ["PROJECT_DIR"])
import db


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    loaded = {name: sys.modules[name].__cached__ for name in ("flask", "sqlalchemy", "db")}
    return [json.dumps({
        "optimize": sys.flags.optimize,
        "docstring": flask.Flask.__doc__,
        "compiled": {name: os.path.exists(path) for name, path in loaded.items()},
    }).encode()]
"""


def test_workers_run_optimized_from_compiled_bytecode(tmp_path):
    (tmp_path / "bytecode_probe.py").write_text(PROBE)
    server = LiveServer(
        database_url=f"sqlite:///{tmp_path / 'stores.db'}",
        processes=1,
        extra_env={"PROJECT_DIR": str(ROOT), "WEBHOOK_WORKER_EXTERNAL": "1"},
        args=("--pythonpath", str(tmp_path), "--module", "bytecode_probe:application"),
    )
    with server:
        seen = json.loads(requests.get(server.url + "/", timeout=10).content)
    assert seen["optimize"] == 2
    assert seen["docstring"] is None
    assert seen["compiled"] == {"flask": True, "sqlalchemy": True, "db": True}, seen
