"""wsgi.py as a uWSGI worker loads it."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Libraries only some requests (or other processes) need: each worker would
# otherwise carry them from its start (docs/benchmarks.md, "Memory").
LOADED_ON_DEMAND = (
    "alembic",  # `flask db` only
    "PIL",  # the first image upload
    "urllib3",  # the webhook worker's deliveries; a web worker's first webhook registration
    "standardwebhooks",
)


def printed_by_a_worker(tmp_path, program):
    """The last line `program` prints, run in a process that imports wsgi.py
    as a uWSGI worker does (production settings, SQLite, no Redis)."""
    worker = (
        "import sys, types\n"
        "sys.modules['uwsgi'] = types.ModuleType('uwsgi')  # what a uWSGI worker can import\n"
        "sys.modules['uwsgi'].opt = {}  # its options: none\n"
        "import wsgi\n"
    )
    env = {
        **os.environ,
        "APP_ENV": "production",
        "JWT_SECRET_KEY": "s" * 64,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'stores.db'}",
    }
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", worker + program], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()[-1]


def test_a_worker_starts_without_what_only_some_requests_need(tmp_path):
    program = "import json\nprint(json.dumps(sorted(sys.modules)))\n"
    loaded = {name.split(".")[0] for name in json.loads(printed_by_a_worker(tmp_path, program))}
    assert "flask" in loaded and "sqlalchemy" in loaded
    assert loaded.isdisjoint(LOADED_ON_DEMAND), loaded & set(LOADED_ON_DEMAND)


def test_a_worker_frees_the_cycles_requests_leave_within_a_few_hundred_requests(tmp_path):
    """Each request leaves a small cycle (Werkzeug's URL matcher) that only the
    collector frees; wsgi.py's collection threshold bounds how many wait in
    the worker's memory."""
    program = (
        "import gc, io\n"
        "from werkzeug.test import EnvironBuilder\n"
        "environ = EnvironBuilder(path='/health').get_environ()\n"
        "for _ in range(1000):\n"
        "    body = wsgi.application(dict(environ, **{'wsgi.input': io.BytesIO()}), lambda *a: None)\n"
        "    body.close()\n"
        "print(gc.collect())\n"
    )
    waiting = int(printed_by_a_worker(tmp_path, program))
    # 1,000 requests' cycles are 8,000 objects; a few hundred requests' at most may wait.
    assert waiting <= 2_500, waiting
